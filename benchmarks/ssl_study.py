"""The SSL gain over seeds against fair baselines, at CPU scale.

    python benchmarks/ssl_study.py --store demo/store.zarr [--root runs/ssl_study] [--seeds 0 1 2]
    nohup python benchmarks/ssl_study.py --store demo/store.zarr > ssl_study.log 2>&1 &   # about 3 h

For each seed: pretrain (`cpu` preset, that seed), then for each protocol (S1, All) fine-tune
three arms with that seed and evaluate each on the test subjects, then draw Fig. 4 of the
pretrained sync head (ROOT/fig4_sN; over seeds in `sync_vs_gap` and ssl_study_sync_vs_gap.png):

  ssl               from the pretrained backbone, the stem and 3 stages frozen (the paper's protocol)
  random_frozen     random init, frozen the same way (the paper's protocol as it reads)
  random_unfrozen   random init, nothing frozen (the fair baseline)

With --ablations, one seed (the first) of the Table 1 ablations that matter most (only sync,
only flip, background kept in pretraining, single view), each fine-tuned as `ssl` under
protocol S1 and compared with that seed's `ssl` run; `--ablations only_flip single_view` runs
those, in that order.

One folder per run under ROOT. A rerun skips what is finished and resumes an interrupted
training run from its checkpoint, so the study can be stopped at any moment (or cut into
slices with --stop-after-stages) and continued later. After every finished evaluation it
writes the JSON (per-seed numbers under `runs`; `summary[protocol][arm][metric] = {mean, std,
n}`, std over seeds with ddof 1; `paired`, the gains seed by seed), then the figures, and
prints the table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from train.config import FINETUNE_PRESETS, PRETRAIN_PRESETS
from train.evaluate import evaluate, load_sync_model, pyplot, sync_vs_gap
from train.finetune import finetune
from train.pretrain import pretrain

ARMS = {"ssl": "stages:3", "random_frozen": "stages:3", "random_unfrozen": "none"}
METRICS = ("mpjpe", "nmpjpe", "pmpjpe")
ABLATIONS = {"only_sync": {"tasks": "sync"}, "only_flip": {"tasks": "flip"},
             "background_kept": {"background": "kept"}, "single_view": {"views": "single"}}


class Stop(Exception):
    """--stop-after-stages reached: the study stops here and a rerun continues."""


def aggregate(runs: list[dict]) -> dict:
    """summary[protocol][arm][metric] = {mean, std (over seeds, ddof 1; 0 for one seed), n}."""
    out: dict = {}
    for r in runs:
        out.setdefault(r["protocol"], {}).setdefault(r["arm"], {m: [] for m in METRICS})
        for m in METRICS:
            out[r["protocol"]][r["arm"]][m].append(r[m])
    return {p: {a: {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                        "n": len(v)} for m, v in arms.items()} for a, arms in protos.items()}
            for p, protos in out.items()}


def verdict(summary: dict, metric: str = "mpjpe") -> dict:
    """Per protocol: the SSL gain over each random baseline (mean difference, mm) and whether it
    exceeds the spread (the larger std of the two arms; needs n >= 2 in both)."""
    out = {}
    for protocol, arms in summary.items():
        if "ssl" not in arms:
            continue
        for base in ("random_unfrozen", "random_frozen"):
            if base not in arms:
                continue
            s, b = arms["ssl"][metric], arms[base][metric]
            gain, spread = b["mean"] - s["mean"], max(s["std"], b["std"])
            out[f"{protocol}: ssl vs {base}"] = {
                "gain_mm": gain, "spread_mm": spread, "n": min(s["n"], b["n"]),
                "gain_exceeds_spread": bool(min(s["n"], b["n"]) >= 2 and gain > spread)}
    return out


def paired(runs: list[dict]) -> dict:
    """Per metric and protocol, the SSL gain over each random baseline seed by seed (the arms of a
    seed share that seed in pretraining and fine-tuning): `per_seed` (mm, positive = SSL better),
    their mean and standard deviation (ddof 1), and whether every seed agrees in sign."""
    by = {(r["protocol"], r["arm"], r["seed"]): r for r in runs}
    out = {}
    for metric in METRICS:
        for protocol in dict.fromkeys(r["protocol"] for r in runs):
            for base in ("random_unfrozen", "random_frozen"):
                gains = {seed: by[(protocol, base, seed)][metric] - by[(protocol, "ssl", seed)][metric]
                         for (p, arm, seed) in by if p == protocol and arm == "ssl" and (protocol, base, seed) in by}
                if not gains:
                    continue
                g = np.array(list(gains.values()))
                out.setdefault(metric, {})[f"{protocol}: ssl vs {base}"] = {
                    "per_seed": {str(k): float(v) for k, v in gains.items()}, "mean": float(g.mean()),
                    "std": float(g.std(ddof=1)) if len(g) > 1 else 0.0, "n": len(g),
                    "same_sign": bool(len(g) > 1 and (np.all(g > 0) or np.all(g < 0)))}
    return out


def table(summary: dict) -> str:
    lines = ["| protocol | arm | MPJPE | NMPJPE | PMPJPE | seeds |", "|---|---|---:|---:|---:|---:|"]
    for protocol, arms in summary.items():
        for arm, m in arms.items():
            cells = " | ".join(f"{m[k]['mean']:.1f} +- {m[k]['std']:.1f}" for k in METRICS)
            lines.append(f"| {protocol} | {arm} | {cells} | {m['mpjpe']['n']} |")
    return "\n".join(lines)


def ablation_table(ablations: dict, runs: list[dict], pretext: dict) -> str:
    """Each ablation beside the `ssl` run of its seed (protocol S1), with the pretext accuracies."""
    seeds = {a["seed"] for a in ablations.values()}
    rows = [("ssl (both tasks)", r, pretext.get(str(r["seed"]), {})) for r in runs
            if r["protocol"] == "S1" and r["arm"] == "ssl" and r["seed"] in seeds]
    rows += [(name, a, a["pretext"]) for name, a in ablations.items()]
    lines = ["| pretraining | seed | MPJPE | NMPJPE | PMPJPE | test sync | test flip |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r, p in rows:
        acc = " | ".join(f"{p[k]:.3f}" if k in p else "-" for k in ("test_acc_sync", "test_acc_flip"))
        lines.append(f"| {name} | {r['seed']} | {r['mpjpe']:.1f} | {r['nmpjpe']:.1f} | {r['pmpjpe']:.1f} | {acc} |")
    return "\n".join(lines)


def figure(runs: list[dict], summary: dict, path: Path) -> None:
    plt = pyplot()
    protocols = list(summary)
    fig, axes = plt.subplots(1, max(1, len(protocols)), figsize=(4.2 * max(1, len(protocols)), 3.4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        arms = list(summary[protocol])
        for i, arm in enumerate(arms):
            m = summary[protocol][arm]["mpjpe"]
            ax.bar(i, m["mean"], yerr=m["std"], capsize=4, color="C0" if arm == "ssl" else "C7", alpha=0.7)
            seeds = [r["mpjpe"] for r in runs if r["protocol"] == protocol and r["arm"] == arm]
            ax.plot([i] * len(seeds), seeds, "k.", ms=5)
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=8)
        ax.set(title=f"protocol {protocol}", ylabel="test MPJPE (mm), mean +- std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


class Study:
    """The stages of the study, each skipped when finished and resumed when interrupted."""

    def __init__(self, args):
        self.args, self.store, self.root = args, args.store, Path(args.root)
        self.pre = dataclasses.replace(PRETRAIN_PRESETS[args.pretrain_preset], **args.pretrain_overrides)
        self.ft = dataclasses.replace(FINETUNE_PRESETS[args.finetune_preset], **args.finetune_overrides)
        self.stages_left = args.stop_after_stages

    def _count(self) -> None:
        if self.stages_left is not None:
            if self.stages_left <= 0:
                raise Stop
            self.stages_left -= 1

    def pretrain(self, name: str, seed: int, **changes) -> Path:
        out = self.root / name
        if not (out / "metrics.json").exists():
            self._count()
            cfg = dataclasses.replace(self.pre, seed=seed, **changes)
            print(f"pretrain {name} ({cfg.steps} steps)", flush=True)
            pretrain(self.store, out, cfg, resume=(out / "checkpoint.pt").exists(), progress=self.args.progress)
        return out

    def finetune_eval(self, name: str, init: str, protocol: str, freeze: str, seed: int) -> dict:
        out, rep = self.root / f"ft_{name}", self.root / f"eval_{name}"
        if not (out / "metrics.json").exists():
            self._count()
            cfg = dataclasses.replace(self.ft, init=init, protocol=protocol, freeze=freeze, seed=seed)
            print(f"finetune {name} ({cfg.steps} steps)", flush=True)
            finetune(self.store, out, cfg, resume=(out / "checkpoint.pt").exists(), progress=self.args.progress)
        if not (rep / "report.json").exists():
            self._count()
            evaluate(out, self.store, rep, figures=False)
        return json.loads((rep / "report.json").read_text())["overall"]

    def sync_curve(self, seed: int, pre: Path) -> dict:
        """Fig. 4 of a pretraining run: its sync head's accuracy against the time gap."""
        out = self.root / f"fig4_s{seed}"
        path = out / "sync_vs_gap.json"
        if not path.exists():
            self._count()
            print(f"Fig. 4 of {pre.name}", flush=True)
            out.mkdir(parents=True, exist_ok=True)
            _write_json(path, sync_vs_gap(load_sync_model(pre), self.store, out / "sync_vs_gap.png",
                                          per_gap=self.args.gap_pairs))
        return json.loads(path.read_text())

    def ablation(self, name: str, seed: int) -> dict:
        """One Table 1 ablation: pretrain with its changes, then fine-tune and evaluate as `ssl` (S1)."""
        changes = ABLATIONS[name]
        pre = self.pretrain(f"pretrain_{name}_s{seed}", seed, **changes)
        m = self.finetune_eval(f"S1_ssl_{name}_s{seed}", str(pre), "S1", ARMS["ssl"], seed)
        return {"seed": seed, "changes": changes, **{k: m[k] for k in METRICS},
                "pretext": _brief(json.loads((pre / "metrics.json").read_text()))}

    def run(self) -> dict:
        self.runs, self.pretext, self.ablations, self.curves = [], {}, {}, {}
        try:
            for seed in self.args.seeds:
                pre = self.pretrain(f"pretrain_s{seed}", seed)
                self.pretext[str(seed)] = json.loads((pre / "metrics.json").read_text())
                for protocol in self.args.protocols:
                    for arm, freeze in ARMS.items():
                        init = str(pre) if arm == "ssl" else "random"
                        m = self.finetune_eval(f"{protocol}_{arm}_s{seed}", init, protocol, freeze, seed)
                        self.runs.append({"seed": seed, "protocol": protocol, "arm": arm,
                                          **{k: m[k] for k in METRICS}, "n_images": m["n"]})
                        self.write()
                self.curves[str(seed)] = self.sync_curve(seed, pre)
                self.write()
            seed = self.args.seeds[0]
            self.ablations |= {name: self.ablation(name, seed) for name in ABLATIONS  # finished by an earlier call
                               if (self.root / f"eval_S1_ssl_{name}_s{seed}" / "report.json").exists()}
            for name in [] if self.args.ablations is None else self.args.ablations or list(ABLATIONS):
                self.ablations[name] = self.ablation(name, seed)
                self.write()
        except Stop:
            print("stopped (--stop-after-stages); rerun to continue", flush=True)
        return self.write()

    def write(self) -> dict:
        summary, curves = aggregate(self.runs), gap_summary(self.curves) if self.curves else {}
        doc = {"store": str(self.store), "root": str(self.root), "seeds": list(self.args.seeds),
               "protocols": list(self.args.protocols), "arms": ARMS,
               "pretrain_config": dataclasses.asdict(self.pre), "finetune_config": dataclasses.asdict(self.ft),
               "runs": self.runs, "summary": summary, "verdict": verdict(summary), "paired": paired(self.runs),
               "pretext": {s: _brief(m) for s, m in self.pretext.items()},
               "sync_vs_gap": {"per_seed": self.curves, "summary": curves},
               "ablations": self.ablations, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(out, doc)
        if self.runs:
            figure(self.runs, summary, out.with_suffix(".png"))
            print(table(summary), flush=True)
        if curves:
            gap_figure(curves, out.with_name(out.stem + "_sync_vs_gap.png"))
        if self.ablations:
            print(ablation_table(self.ablations, self.runs, self.pretext), flush=True)
        return doc


def _write_json(path: Path, doc) -> None:
    """Write JSON atomically (a temp file, then a rename): a stopped study never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


def _brief(metrics: dict) -> dict:
    """A pretraining's metrics.json without its breakdowns."""
    return {k: v for k, v in metrics.items() if not k.endswith("breakdown")}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="demo/store.zarr")
    ap.add_argument("--root", default="runs/ssl_study", help="one folder per run under here")
    ap.add_argument("--out", default="benchmarks/results/ssl_study.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--protocols", nargs="+", default=["S1", "All"])
    ap.add_argument("--pretrain-preset", default="cpu")
    ap.add_argument("--finetune-preset", default="cpu")
    ap.add_argument("--pretrain-set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="override pretraining config fields (e.g. steps=100)")
    ap.add_argument("--finetune-set", nargs="*", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--ablations", nargs="*", default=None, choices=list(ABLATIONS), metavar="NAME",
                    help=f"also one seed of these Table 1 ablations, in this order (none named: all of "
                         f"{', '.join(ABLATIONS)})")
    ap.add_argument("--gap-pairs", type=int, default=320,
                    help="Fig. 4 of each pretraining seed: anchors per gap (twice as many pairs)")
    ap.add_argument("--stop-after-stages", type=int, default=None, help="run at most this many stages now")
    ap.add_argument("--progress", action="store_true", help="progress bars for each run")
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


def main(argv=None) -> dict:
    return Study(parse(argv)).run()


if __name__ == "__main__":
    main()
