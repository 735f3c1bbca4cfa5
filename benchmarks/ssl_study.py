"""The SSL study: does pretraining on multi-view synchronization help? Decided with intervals.

    nohup python benchmarks/ssl_study.py --store demo/store.zarr > ssl_study.log 2>&1 &

For each seed (default 0-4), one folder per stage under ROOT (default runs/ssl_study):

  pretrain_sN            self-supervised pretraining, the `cpu` preset with that seed
  ft_P_ARM_sN, eval_P_ARM_sN   fine-tuning under protocol P (S1, All) and its evaluation on every
                         8th test frame, all cameras (the paper's every-64th row is its subset):
                           ssl_frozen       pretrained, the stem and 3 stages frozen (the paper's protocol)
                           ssl_unfrozen     pretrained, nothing frozen
                           random_frozen    random init, frozen the same way
                           random_unfrozen  random init, nothing frozen
  probe_sN, probe_random_sN   linear probes (`sync-train probe`) of the pretrained backbone and of a
                         random-init one: ridge to the pose (S1, All; strength chosen on the
                         validation subject), and the mirror probe
  fig4_sN                Fig. 4 and the keyframe-phase check of the pretrained sync head

With --ablations NAME..., each named Table 1 ablation on --ablation-seeds (default 0 1 2): pretraining
with one change, then ssl_frozen under protocol S1 and the probes, compared with the same seed's
main run.

Every comparison is a paired difference (the arms of a seed share that seed in pretraining and
fine-tuning; both see the same test images) with a 95 % interval from the two-way bootstrap over
seeds and test instants (train/stats.py) and a verdict: better, no detectable difference, worse.
The JSON keeps every run's per-image errors, so every number can be recomputed.

A rerun skips what is finished and resumes an interrupted training run from its checkpoint; the
study can be stopped at any moment (or cut into slices with --stop-after-stages) and continued.
After every finished stage it writes the JSON and prints the tables. The JSON records every
finished stage's result (`stages`), with the store's fingerprint and both configs: a later run
with the same store and settings takes those results from it, so the study continues on another
machine from the committed JSON alone (a seed whose pretraining checkpoint is gone is pretrained
again only if some of its stages are still to do).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from h36m_prep import store as S
from train.config import FINETUNE_PRESETS, PRETRAIN_PRESETS
from train.evaluate import evaluate, load_sync_model, overall, phase_check, pyplot, subset, sync_vs_gap
from train.finetune import finetune
from train.pretrain import pretrain
from train.probe import probe
from train.stats import format_interval, instant_ids, mean_interval, paired_bootstrap

ARMS = {"ssl_frozen": ("ssl", "stages:3"), "ssl_unfrozen": ("ssl", "none"),
        "random_frozen": ("random", "stages:3"), "random_unfrozen": ("random", "none")}
# (A, B): is A better than B? The first of each pair is the one whose gain is asked about.
COMPARISONS = (("ssl_frozen", "random_frozen"),      # the features, under the paper's protocol
               ("ssl_unfrozen", "random_unfrozen"),  # the init, nothing frozen
               ("ssl_frozen", "random_unfrozen"),    # the paper's protocol against the fair baseline
               ("ssl_unfrozen", "ssl_frozen"))       # what freezing costs a pretrained network
METRICS = ("mpjpe", "nmpjpe", "pmpjpe")
DENSITIES = {"dense": 8, "paper": 64}  # test frames with frame % every == 0
ABLATIONS = {"only_sync": {"tasks": "sync"}, "only_flip": {"tasks": "flip"},
             "background_kept": {"background": "kept"},
             "single_view": {"views": "single", "crop_jitter": True},  # the paper's (l): crops, scales, rotations
             "signed_fusion": {"signed": True}}  # mult + ReLU on signed features, as the paper describes


class Stop(Exception):
    """--stop-after-stages reached: the study stops here and a rerun continues."""


# --- statistics over the runs -----------------------------------------------------------------

def test_table(images: dict) -> dict:
    return {k: images[k] for k in ("row", "subject", "sequence", "camera", "frame")}


def instants_of(table: dict) -> np.ndarray:
    return instant_ids(table["subject"], table["sequence"], table["frame"])


def _density(table: dict, values: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray]:
    keep = np.array([f % every == 0 for f in table["frame"]])
    return values[..., keep], instants_of(table)[keep]


def arm_errors(runs: list[dict], protocol: str, arm: str, metric: str) -> dict:
    """{seed: per-image errors [N]} of one arm."""
    return {r["seed"]: np.asarray(r["per_image"][metric]) for r in runs
            if r["protocol"] == protocol and r["arm"] == arm}


def summarize(runs: list[dict], table: dict) -> dict:
    """summary[protocol][arm][metric][density] = mean with its two-way bootstrap interval."""
    out: dict = {}
    for r in runs:
        out.setdefault(r["protocol"], {}).setdefault(r["arm"], {})
    for protocol, arms in out.items():
        for arm in arms:
            for metric in METRICS:
                errs = arm_errors(runs, protocol, arm, metric)
                values = np.stack([errs[s] for s in sorted(errs)])
                arms[arm][metric] = {d: mean_interval(*_density(table, values, every)) | {"seed_ids": sorted(errs)}
                                     for d, every in DENSITIES.items()}
    return out


def compare(a: dict, b: dict, table: dict, every: int) -> dict | None:
    """Paired comparison of per-seed per-image errors {seed: [N]}: A better when positive (B - A)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diff = np.stack([b[s] - a[s] for s in seeds])
    d, inst = _density(table, diff, every)
    return paired_bootstrap(d, inst) | {"seed_ids": seeds}


def comparisons(runs: list[dict], table: dict) -> list[dict]:
    out = []
    for protocol in dict.fromkeys(r["protocol"] for r in runs):
        for a, b in COMPARISONS:
            for metric in METRICS:
                for density, every in DENSITIES.items():
                    c = compare(arm_errors(runs, protocol, a, metric), arm_errors(runs, protocol, b, metric), table, every)
                    if c:
                        out.append({"protocol": protocol, "a": a, "b": b, "metric": metric, "density": density, **c})
    return out


def probe_errors(probes: dict, init: str, protocol: str, layer: str, metric: str) -> dict:
    return {int(s): np.asarray(p[init]["pose"][protocol]["layers"][layer]["per_image"][metric])
            for s, p in probes.items() if init in p and protocol in p[init]["pose"]}


def probe_summary(probes: dict) -> dict:
    """Per protocol and layer: each init's mean error with its interval, and ssl against random."""
    if not probes:
        return {}
    first = next(p for p in probes.values() if "random" in p or "ssl" in p)
    any_init = first.get("ssl") or first.get("random")
    out = {}
    for protocol, rep in any_init["pose"].items():
        inst = instant_ids(rep["test_subject"], rep["test_sequence"], rep["test_frame"])
        for layer in rep["layers"]:
            cell = out.setdefault(protocol, {}).setdefault(layer, {})
            for metric in ("mpjpe", "pmpjpe"):
                per = {init: probe_errors(probes, init, protocol, layer, metric) for init in ("ssl", "random")}
                for init, errs in per.items():
                    if errs:
                        cell.setdefault(init, {})[metric] = mean_interval(np.stack([errs[s] for s in sorted(errs)]),
                                                                          inst) | {"seed_ids": sorted(errs)}
                seeds = sorted(set(per["ssl"]) & set(per["random"]))
                if seeds:
                    diff = np.stack([per["random"][s] - per["ssl"][s] for s in seeds])
                    cell.setdefault("ssl_vs_random", {})[metric] = paired_bootstrap(diff, inst) | {"seed_ids": seeds}
    return out


def ablation_probe_comparisons(name: str, ablation: dict, probes: dict) -> list[dict]:
    """An ablation's probes against the main pretraining's probes of the same seeds, per protocol,
    layer and metric: paired over seeds and the probe's test instants (positive: the ablation better)."""
    seeds = [s for s, r in ablation["seeds"].items() if "probe" in r and "ssl" in probes.get(s, {})]
    if not seeds:
        return []
    rows = []
    for protocol, rep in ablation["seeds"][seeds[0]]["probe"]["pose"].items():
        inst = instant_ids(rep["test_subject"], rep["test_sequence"], rep["test_frame"])
        for layer in rep["layers"]:
            for metric in ("mpjpe", "pmpjpe"):
                errors = lambda p: np.asarray(p["pose"][protocol]["layers"][layer]["per_image"][metric])  # noqa: E731
                diff = np.stack([errors(probes[s]["ssl"]) - errors(ablation["seeds"][s]["probe"]) for s in seeds])
                rows.append({"probe": protocol, "layer": layer, "metric": metric, "a": name, "b": "both tasks",
                             **paired_bootstrap(diff, inst), "seed_ids": sorted(int(s) for s in seeds)})
    return rows


def ablation_table(doc: dict) -> str:
    """Each ablation against both tasks, same seeds: the S1 fine-tune (every 8th test frame) and the
    layer4 probes; the pretext accuracies (on the ablation's own pairs: a single-view task is
    another task)."""
    lines = ["| pretraining | seeds | S1 fine-tune MPJPE, both - it [95 %] | PMPJPE | probe S1 layer4 PMPJPE | "
             "probe All layer4 PMPJPE | verdict (fine-tune MPJPE) | test sync | test flip |",
             "|---|---:|---|---|---|---|---|---:|---:|"]
    for name, rows in doc.get("ablation_comparisons", {}).items():
        def cell(**want):
            r = next((r for r in rows if all(r.get(k) == v for k, v in want.items())), None)
            return (format_interval(r), r) if r else ("-", None)
        mpjpe, first = cell(metric="mpjpe", density="dense")
        pretext = [r["pretext"] for r in doc["ablations"][name]["seeds"].values()]
        acc = {k: float(np.mean([p[k] for p in pretext])) for k in ("test_acc_sync", "test_acc_flip")}
        probes = [cell(probe=p, layer="layer4", metric="pmpjpe")[0] for p in ("S1", "All")]
        lines.append(f"| {name} | {first['seeds'] if first else '-'} | {mpjpe} "
                     f"| {cell(metric='pmpjpe', density='dense')[0]} | {probes[0]} | {probes[1]} "
                     f"| {first['verdict'] if first else '-'} | {acc['test_acc_sync']:.3f} | {acc['test_acc_flip']:.3f} |")
    return "\n".join(lines)


def mirror_summary(probes: dict) -> dict:
    out = {}
    for init in ("ssl", "random"):
        reps = {s: p[init]["mirror"] for s, p in probes.items() if init in p and "mirror" in p[init]}
        if not reps:
            continue
        first = next(iter(reps.values()))
        inst = instant_ids(first["test_subject"], first["test_sequence"], first["test_frame"])
        for layer in first["layers"]:
            hits = np.stack([np.asarray(reps[s]["layers"][layer]["hits"], np.float64) for s in sorted(reps)])
            out.setdefault(init, {})[layer] = mean_interval(hits, inst) | {"seed_ids": sorted(int(s) for s in reps)}
            paired = sorted(s for s in reps if "pair_hits" in reps[s]["layers"][layer])  # probes before pairs: none
            if paired:
                pairs = np.stack([np.asarray(reps[s]["layers"][layer]["pair_hits"], np.float64) for s in paired])
                out[init][layer]["pairwise"] = mean_interval(pairs, inst[:pairs.shape[1]]) | {
                    "seed_ids": [int(s) for s in paired]}
    return out


def gap_summary(curves: dict) -> dict:
    """Fig. 4 over seeds: per group of subjects, the sync accuracy at each gap, mean and standard
    deviation (ddof 1) over the pretraining seeds."""
    out = {}
    for group in ("test", "train"):
        first = next(iter(curves.values()))[group]
        acc = np.array([c[group]["accuracy"] for c in curves.values()])
        out[group] = {"subjects": first["subjects"], "gaps": first["gaps"], "mean": acc.mean(0).tolist(),
                      "std": (acc.std(0, ddof=1) if len(acc) > 1 else 0 * acc[0]).tolist(), "n": len(acc),
                      "pairs": first["pairs"]}
    return out


def phase_summary(checks: dict) -> dict:
    """The keyframe-phase check over seeds: per phase, observed and expected accuracy summed over
    the seeds' pairs, and the standard error of their difference."""
    if not checks:
        return {}
    gop = next(iter(checks.values()))["gop"]
    rows = []
    for phase in range(gop):
        cells = [c["by_phase"][phase] for c in checks.values()]
        n = sum(c["pairs"] for c in cells)
        acc = sum(c["accuracy"] * c["pairs"] for c in cells) / max(n, 1)
        exp = sum(c["expected"] * c["pairs"] for c in cells) / max(n, 1)
        rows.append({"phase": phase, "pairs": n, "accuracy": acc, "expected": exp,
                     "stderr": float(np.sqrt(acc * (1 - acc) / max(n, 1)))})
    return {"seeds": sorted(int(s) for s in checks), "by_phase": rows}


# --- tables and figures ---------------------------------------------------------------------------

def table(summary: dict, density: str = "dense") -> str:
    lines = [f"| protocol | arm | MPJPE | NMPJPE | PMPJPE | seeds |", "|---|---|---|---|---|---:|"]
    for protocol, arms in summary.items():
        for arm, m in arms.items():
            cells = " | ".join(format_interval(m[k][density]) for k in METRICS)
            lines.append(f"| {protocol} | {arm} | {cells} | {m['mpjpe'][density]['seeds']} |")
    return "\n".join(lines)


def comparison_table(comps: list[dict], metrics=("mpjpe", "pmpjpe"), density: str = "dense") -> str:
    lines = ["| protocol | A vs B | metric | B - A (mm) [95 %] | verdict for A | seeds | instants |",
             "|---|---|---|---|---|---:|---:|"]
    for c in comps:
        if c["metric"] in metrics and c["density"] == density:
            lines.append(f"| {c['protocol']} | {c['a']} vs {c['b']} | {c['metric']} | {format_interval(c)} | {c['verdict']} | "
                         f"{c['seeds']} | {c['instants']} |")
    return "\n".join(lines)


def probe_table(summary: dict) -> str:
    lines = ["| protocol | layer | metric | ssl | random | random - ssl [95 %] | verdict for ssl | seeds |",
             "|---|---|---|---|---|---|---|---:|"]
    for protocol, layers in summary.items():
        for layer, cell in layers.items():
            for metric in ("mpjpe", "pmpjpe"):
                s, r, c = (cell.get(k, {}).get(metric) for k in ("ssl", "random", "ssl_vs_random"))
                lines.append(f"| {protocol} | {layer} | {metric} | {format_interval(s) if s else '-'} | {format_interval(r) if r else '-'} | "
                             f"{format_interval(c) if c else '-'} | {c['verdict'] if c else '-'} | {c['seeds'] if c else '-'} |")
    return "\n".join(lines)


def phase_table(summary: dict) -> str:
    lines = ["| dt mod 12 | pairs | accuracy | expected from its gaps | difference / s.e. |", "|---:|---:|---:|---:|---:|"]
    for r in summary.get("by_phase", []):
        z = (r["accuracy"] - r["expected"]) / max(r["stderr"], 1e-9)
        lines.append(f"| {r['phase']} | {r['pairs']} | {r['accuracy']:.3f} | {r['expected']:.3f} | {z:+.1f} |")
    return "\n".join(lines)


def figure(summary: dict, path: Path, density: str = "dense") -> None:
    plt = pyplot()
    protocols = list(summary)
    fig, axes = plt.subplots(1, max(1, len(protocols)), figsize=(4.6 * max(1, len(protocols)), 3.6), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        arms = list(summary[protocol])
        for i, arm in enumerate(arms):
            m = summary[protocol][arm]["mpjpe"][density]
            ax.errorbar(i, m["mean"], yerr=[[m["mean"] - m["low"]], [m["high"] - m["mean"]]], fmt="o", capsize=4,
                        color="C0" if arm.startswith("ssl") else "C7")
            ax.plot([i] * len(m["per_seed"]), m["per_seed"], "k.", ms=4)
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=8)
        ax.set(title=f"protocol {protocol}", ylabel="test MPJPE (mm): mean, 95 % interval, seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gap_figure(summary: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for group, c in summary.items():
        ax.errorbar(c["gaps"], c["mean"], yerr=c["std"], fmt="o-", capsize=3,
                    label=f"{group}: {' '.join(c['subjects'])}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    n = next(iter(summary.values()))
    ax.set_title(f"Fig. 4 over {n['n']} pretraining seeds: mean +- std; {n['pairs']} pairs a gap", fontsize=8)
    ax.set(xlabel="time gap dt (frames; drawn from [dt-7, dt+8])", ylabel="synchronization accuracy", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the stages -------------------------------------------------------------------------------------

class Study:
    """The stages of the study, each skipped when finished and resumed when interrupted."""

    def __init__(self, args):
        self.args, self.store, self.root = args, args.store, Path(args.root)
        self.pre = dataclasses.replace(PRETRAIN_PRESETS[args.pretrain_preset], **args.pretrain_overrides)
        self.ft = dataclasses.replace(FINETUNE_PRESETS[args.finetune_preset], **args.finetune_overrides)
        self.stages_left = args.stop_after_stages
        self.fingerprint = store_fingerprint(self.store)
        self.cache = self._earlier_stages()

    def _earlier_stages(self) -> dict:
        """The finished stages of an earlier run of this study with the same store and settings."""
        out = Path(self.args.out)
        if not out.exists():
            return {}
        doc = json.loads(out.read_text())
        same = (doc.get("store_fingerprint") == self.fingerprint
                and doc.get("pretrain_config") == json.loads(json.dumps(dataclasses.asdict(self.pre)))
                and doc.get("finetune_config") == json.loads(json.dumps(dataclasses.asdict(self.ft))))
        if not same:
            print(f"note: {out} was made with another store or other settings; its results are not reused "
                  "(it is overwritten)", flush=True)
            return {}
        return doc.get("stages", {})

    def _stage(self, name: str, work) -> dict:
        """The result of stage `name`: recorded earlier, or computed now by work() and recorded."""
        if name not in self.cache:
            self.cache[name] = work()
            self.unsaved = True
        return self.cache[name]

    def save(self) -> None:
        """Write the JSON when a stage finished since the last write: replaying recorded stages
        recomputes the bootstrap intervals once, at the end, not after every stage."""
        if self.unsaved:
            self.unsaved = False
            self.write()

    def _count(self) -> None:
        if self.stages_left is not None:
            if self.stages_left <= 0:
                raise Stop
            self.stages_left -= 1

    def pretrain(self, name: str, seed: int, **changes) -> Path:
        """The run folder of a pretraining, trained (or resumed) when a stage that needs it is to do."""
        out = self.root / name
        if not (out / "metrics.json").exists():
            self._count()
            cfg = dataclasses.replace(self.pre, seed=seed, **changes)
            print(f"pretrain {name} ({cfg.steps} steps)", flush=True)
            pretrain(self.store, out, cfg, resume=(out / "checkpoint.pt").exists(), progress=self.args.progress)
        return out

    def pretext_of(self, name: str, seed: int, **changes) -> dict:
        return self._stage(name, lambda: _brief(json.loads((self.pretrain(name, seed, **changes) / "metrics.json")
                                                           .read_text())))

    def finetune_eval(self, name: str, init, protocol: str, freeze: str, seed: int) -> dict:
        """init: 'random' or a callable giving the pretraining run folder (called only when needed)."""
        m = self._stage(f"eval_{name}", lambda: self._finetune_eval(name, init, protocol, freeze, seed))
        if self.table is None:
            self.table = m["test_images"]
        elif m["test_images"]["row"] != self.table["row"]:
            raise ValueError(f"eval_{name}: evaluated on other test images than the study's other runs; delete its "
                             "folder and its entry in the JSON's stages to redo it")
        return {k: m[k] for k in ("overall", "paper", "per_image")}

    def _finetune_eval(self, name: str, init, protocol: str, freeze: str, seed: int) -> dict:
        out, rep = self.root / f"ft_{name}", self.root / f"eval_{name}"
        init = init if init == "random" else str(init())
        if not (out / "metrics.json").exists():
            self._count()
            cfg = dataclasses.replace(self.ft, init=init, protocol=protocol, freeze=freeze, seed=seed)
            print(f"finetune {name} ({cfg.steps} steps)", flush=True)
            finetune(self.store, out, cfg, resume=(out / "checkpoint.pt").exists(), progress=self.args.progress)
        if not (rep / "report.json").exists():
            self._count()
            evaluate(out, self.store, rep, every=DENSITIES["dense"], figures=False)
        report = json.loads((rep / "report.json").read_text())
        images = report["per_image"]
        return {"overall": report["overall"], "paper": overall(subset(images, DENSITIES["paper"])),
                "per_image": {m: images[m] for m in METRICS}, "test_images": test_table(images)}

    def probe(self, name: str, init, seed: int, arch: str) -> dict:
        """init: 'random' or a callable giving the pretraining run folder (called only when needed).
        A probe recorded before the mirror probe scored pairs is redone."""
        def work():
            out = self.root / name
            if (out / "probe.json").exists() and not _pairs_scored(json.loads((out / "probe.json").read_text())):
                (out / "probe.json").unlink()
            if not (out / "probe.json").exists():
                self._count()
                print(f"probe {name}", flush=True)
                probe(init if init == "random" else str(init()), self.store, out, protocols=self.args.protocols,
                      val_subject=self.args.val_subject, arch=arch, input_size=self.pre.input_size, seed=seed,
                      progress=False)
            return json.loads((out / "probe.json").read_text())
        if name in self.cache and not _pairs_scored(self.cache[name]):
            del self.cache[name]
        return self._stage(name, work)

    def sync_curve(self, seed: int, pre) -> tuple[dict, dict]:
        """Fig. 4 of a pretraining run (pre: a callable giving its folder) and its keyframe-phase
        check on the test subjects."""
        def work():
            out = self.root / f"fig4_s{seed}"
            path, phase = out / "sync_vs_gap.json", out / "phase_check.json"
            if not phase.exists():
                run = pre()
                self._count()
                print(f"Fig. 4 and the phase check of {run.name}", flush=True)
                out.mkdir(parents=True, exist_ok=True)
                sync = load_sync_model(run)
                curve = sync_vs_gap(sync, self.store, out / "sync_vs_gap.png", per_gap=self.args.gap_pairs)
                _write_json(path, curve)
                _write_json(phase, phase_check(sync, self.store, curve["test"]["subjects"],
                                               pairs=self.args.phase_pairs))
            return {"curve": json.loads(path.read_text()), "phase": json.loads(phase.read_text())}
        r = self._stage(f"fig4_s{seed}", work)
        return r["curve"], r["phase"]

    def main_seed(self, seed: int) -> None:
        pre = lambda: self.pretrain(f"pretrain_s{seed}", seed)  # noqa: E731  (only when a stage needs it)
        self.pretext[str(seed)] = self.pretext_of(f"pretrain_s{seed}", seed)
        for protocol in self.args.protocols:
            for arm, (init, freeze) in ARMS.items():
                m = self.finetune_eval(f"{protocol}_{arm}_s{seed}", pre if init == "ssl" else "random",
                                       protocol, freeze, seed)
                self.runs.append({"seed": seed, "protocol": protocol, "arm": arm, **m})
                self.save()
        self.probes[str(seed)] = {"ssl": self.probe(f"probe_s{seed}", pre, seed, self.pre.arch),
                                  "random": self.probe(f"probe_random_s{seed}", "random", seed, self.pre.arch)}
        self.save()
        self.curves[str(seed)], self.phases[str(seed)] = self.sync_curve(seed, pre)
        self.save()

    def ablation(self, name: str, seed: int) -> None:
        """One Table 1 ablation on one seed: pretrain with its changes, then ssl_frozen under S1 and the probes."""
        changes = ABLATIONS[name]
        pre = lambda: self.pretrain(f"pretrain_{name}_s{seed}", seed, **changes)  # noqa: E731
        pretext = self.pretext_of(f"pretrain_{name}_s{seed}", seed, **changes)
        m = self.finetune_eval(f"S1_ssl_frozen_{name}_s{seed}", pre, "S1", ARMS["ssl_frozen"][1], seed)
        p = self.probe(f"probe_{name}_s{seed}", pre, seed, self.pre.arch)
        self.ablations.setdefault(name, {"changes": changes, "seeds": {}})["seeds"][str(seed)] = {
            **m, "pretext": pretext, "probe": p}

    def run(self) -> dict:
        self.runs, self.pretext, self.probes, self.curves, self.phases, self.ablations = [], {}, {}, {}, {}, {}
        self.table, self.unsaved = None, False
        try:
            for seed in self.args.seeds:
                self.main_seed(seed)
            done = lambda n, s: f"probe_{n}_s{s}" in self.cache or (self.root / f"probe_{n}_s{s}" / "probe.json").exists()  # noqa: E731
            for name in ABLATIONS:  # those finished by an earlier call stay in the JSON
                for seed in self.args.ablation_seeds:
                    if done(name, seed) and name not in (self.args.ablations or []):
                        self.ablation(name, seed)
            for name in [] if self.args.ablations is None else self.args.ablations or list(ABLATIONS):
                for seed in self.args.ablation_seeds:
                    self.ablation(name, seed)
                    self.save()
        except Stop:
            print("stopped (--stop-after-stages); rerun to continue", flush=True)
        return self.write()

    def ablation_comparisons(self) -> dict:
        """Each ablation against the main runs of the same seeds (both tasks): the S1 fine-tune
        (ssl_frozen) at both densities, and the probes (every protocol and layer). Positive: the
        ablation better."""
        out = {}
        base = {r["seed"]: r for r in self.runs if r["protocol"] == "S1" and r["arm"] == "ssl_frozen"}
        for name, a in self.ablations.items():
            rows = []
            for metric in ("mpjpe", "pmpjpe"):
                abl = {int(s): np.asarray(r["per_image"][metric]) for s, r in a["seeds"].items()}
                ref = {s: np.asarray(base[s]["per_image"][metric]) for s in abl if s in base}
                for density, every in DENSITIES.items():
                    c = compare(abl, ref, self.table, every)
                    if c:
                        rows.append({"metric": metric, "density": density, "a": name, "b": "both tasks", **c})
            rows += ablation_probe_comparisons(name, a, self.probes)
            out[name] = rows
        return out

    def write(self) -> dict:
        summary = summarize(self.runs, self.table) if self.runs else {}
        comps = comparisons(self.runs, self.table) if self.runs else []
        probes = self.probes
        doc = {"store": str(self.store), "store_fingerprint": self.fingerprint, "root": str(self.root),
               "seeds": list(self.args.seeds),
               "protocols": list(self.args.protocols), "arms": {a: list(v) for a, v in ARMS.items()},
               "comparisons_asked": [list(c) for c in COMPARISONS], "densities": DENSITIES,
               "statistics": "paired two-way bootstrap over seeds and test instants (train/stats.py), 95 % "
                             "percentile intervals, 10000 replicates; instants: (subject, sequence, frame)",
               "pretrain_config": dataclasses.asdict(self.pre), "finetune_config": dataclasses.asdict(self.ft),
               "test_images": self.table, "summary": summary, "comparisons": comps,
               "runs": [{k: v for k, v in r.items() if k != "per_image"} for r in self.runs],  # per image: stages
               "probes": probes, "probe_summary": probe_summary(probes), "mirror_probe": mirror_summary(probes),
               "pretext": self.pretext,
               "sync_vs_gap": {"per_seed": self.curves, "summary": gap_summary(self.curves) if self.curves else {}},
               "phase_check": {"per_seed": self.phases, "summary": phase_summary(self.phases)},
               "ablations": self.ablations, "ablation_comparisons": self.ablation_comparisons() if self.runs else {},
               "stages": self.cache, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(out, doc)
        if summary:
            figure(summary, out.with_suffix(".png"))
            print(table(summary), "", comparison_table(comps), sep="\n", flush=True)
        if doc["probe_summary"]:
            print(probe_table(doc["probe_summary"]), flush=True)
        if self.curves:
            gap_figure(doc["sync_vs_gap"]["summary"], out.with_name(out.stem + "_sync_vs_gap.png"))
        if self.phases:
            print(phase_table(doc["phase_check"]["summary"]), flush=True)
        return doc


def _pairs_scored(report: dict) -> bool:
    """Whether a probe's mirror probe is current: it has the pairwise score (probes before it have
    each image's only) and it rendered the mirrored images (probes before `mirrors_rendered` showed
    every image unmirrored twice, so they read chance whatever the features)."""
    mirror = report.get("mirror", {})
    return bool(mirror.get("mirrors_rendered")) and all("pair_hits" in m for m in mirror.get("layers", {}).values())


# Build options added after the study's first store: at their default they leave the store as it
# was before they existed, so they are left out of the fingerprint then (a rebuilt store keeps
# the fingerprint its results were recorded with).
LATER_BUILD_OPTIONS = {"bg_vote_scale": 1}


def store_fingerprint(store) -> str:
    """What the study's results depend on in the store: its raw files, build options, rows and format."""
    a = S.open_store(store).attrs
    doc = {k: a.get(k) for k in ("raw_fingerprint", "build", "sequences", "units", "format_version", "image_codec")}
    doc["build"] = {k: v for k, v in (doc["build"] or {}).items() if LATER_BUILD_OPTIONS.get(k, object()) != v}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: Path, doc) -> None:
    """Write JSON atomically (a temp file, then a rename): a stopped study never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=None, separators=(",", ":")))
    tmp.replace(path)


def _brief(metrics: dict) -> dict:
    """A pretraining's metrics.json without its breakdowns."""
    return {k: v for k, v in metrics.items() if not k.endswith("breakdown")}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="demo/store.zarr")
    ap.add_argument("--root", default="runs/ssl_study", help="one folder per stage under here")
    ap.add_argument("--out", default="benchmarks/results/ssl_study.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--protocols", nargs="+", default=["S1", "All"])
    ap.add_argument("--val-subject", default="S8", help="the probes choose their ridge strength on this training subject")
    ap.add_argument("--pretrain-preset", default="cpu")
    ap.add_argument("--finetune-preset", default="cpu")
    ap.add_argument("--pretrain-set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="override pretraining config fields (e.g. steps=100)")
    ap.add_argument("--finetune-set", nargs="*", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--ablations", nargs="*", default=None, choices=list(ABLATIONS), metavar="NAME",
                    help=f"after the main seeds, these Table 1 ablations in this order (none named: all of "
                         f"{', '.join(ABLATIONS)})")
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--gap-pairs", type=int, default=320,
                    help="Fig. 4 of each pretraining seed: anchors per gap (twice as many pairs)")
    ap.add_argument("--phase-pairs", type=int, default=4000, help="unsynchronized pairs of the keyframe-phase check")
    ap.add_argument("--stop-after-stages", type=int, default=None, help="run at most this many stages now")
    ap.add_argument("--progress", action="store_true", help="progress bars for each run")
    ap.add_argument("--report", action="store_true", help="print the tables of --out in Markdown and stop")
    args = ap.parse_args(argv)
    args.pretrain_overrides = _overrides(PRETRAIN_PRESETS[args.pretrain_preset], args.pretrain_set)
    args.finetune_overrides = _overrides(FINETUNE_PRESETS[args.finetune_preset], args.finetune_set)
    return args


def _overrides(cfg, pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        field, _, value = pair.partition("=")
        current = getattr(cfg, field)  # AttributeError names an unknown field
        out[field] = type(current)(value) if not isinstance(current, bool) else value.lower() in ("1", "true", "yes")
    return out


def report(doc: dict) -> str:
    """The study's tables in Markdown, from its JSON alone."""
    parts = []
    if doc["summary"]:
        for density, every in DENSITIES.items():
            parts += [f"Test errors, mm, mean [95 % interval over seeds and test instants], every {every}th frame:", "",
                      table(doc["summary"], density), "", f"Paired comparisons, every {every}th frame:", "",
                      comparison_table(doc["comparisons"], density=density), ""]
    if doc["probe_summary"]:
        parts += ["Linear probes (frozen features, ridge), every 8th test frame:", "", probe_table(doc["probe_summary"]), ""]
    if doc["mirror_probe"]:
        parts += ["| mirror probe | layer | each image [95 %] | each pair: mirror scored above [95 %] | seeds |",
                  "|---|---|---|---|---:|"]
        parts += [f"| {init} | {layer} | {format_interval(m, 3)} | "
                  f"{format_interval(m['pairwise'], 3) if 'pairwise' in m else 'not measured'} | {m['seeds']} |"
                  for init, layers in doc["mirror_probe"].items() for layer, m in layers.items()] + [""]
    if doc["phase_check"]["summary"]:
        parts += ["Keyframe-phase check (unsynchronized test pairs):", "", phase_table(doc["phase_check"]["summary"]), ""]
    if doc.get("ablation_comparisons"):
        parts += ["Ablations against both tasks on the same seeds, mm (positive: the ablation better):", "",
                  ablation_table(doc), ""]
    if doc["pretext"]:
        parts += ["| seed | test sync | test flip | training sync | training flip |", "|---:|---:|---:|---:|---:|"]
        parts += [f"| {s} | {p['test_acc_sync']:.3f} | {p['test_acc_flip']:.3f} | {p['train_acc_sync']:.3f} | "
                  f"{p['train_acc_flip']:.3f} |" for s, p in doc["pretext"].items()] + [""]
    return "\n".join(parts)


def run_or_report(args, report, experiment) -> dict:
    """--report: print the tables of --out from its JSON alone; else run (or continue) the experiment."""
    if args.report:
        doc = json.loads(Path(args.out).read_text())
        print(report(doc))
        return doc
    return experiment(args).run()


def main(argv=None) -> dict:
    return run_or_report(parse(argv), report, Study)


if __name__ == "__main__":
    main()
