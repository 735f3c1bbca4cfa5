"""Does `--recompress` hide the keyframe phase from the sync task? Measured where the cue is real.

    nohup python benchmarks/keyframe_phase.py > keyframe_phase.log 2>&1 &

Cameras encoded with one keyframe interval from frame 0 put their keyframes at the same frames:
a synchronized pair always shares its compression phase, and so does an unsynchronized pair whose
gap is a multiple of the interval (12 frames for the MPEG-4 writer). A sync head that learned the
phase instead of the person calls those unsynchronized pairs synchronized more often than their
gaps predict. `--recompress Q` re-compresses every training crop as a JPEG of its own random
quality from Q to 95, which should hide the phase.

The experiment, one folder per stage under ROOT (default runs/keyframe_phase):

  raw, store.zarr        the demo's synthetic dataset and store, but with every camera's keyframes
                         at the same frames (`h36m-prep synth --keyframes aligned`): the cue is real
  pretrain_ARM_sN        the `cpu` preset, seed N, ARM: `plain`, or `recompress` (--recompress Q)
  phase_ARM_sN           the keyframe-phase check of its sync head on the test subjects' unsynchronized
                         pairs (train/evaluate.py, `phase_check`), the same pairs for every run

For each arm, the phase-0 shortfall: the accuracy its gaps predict for the pairs whose gap is a
multiple of 12 (from the other pairs in the same 8-frame gap bins) minus the accuracy on them;
positive where the head takes the shared phase for synchrony. Then recompress against plain:
the paired difference of the shortfalls with a 95 % interval from a bootstrap over seeds and pairs
(both arms see the same pairs and seeds), and a verdict. The training and test sync accuracy of
each run show what the re-compression costs the task itself.

Resumable like benchmarks/ssl_study.py: a rerun skips what is finished (kept in the JSON's `stages`)
and resumes an interrupted pretraining from its checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ssl_study import _brief, _overrides, _write_json, run_or_report, store_fingerprint  # noqa: E402

from h36m_prep import store as S  # noqa: E402
from train.config import PRETRAIN_PRESETS  # noqa: E402
from train.evaluate import load_sync_model, phase_check  # noqa: E402
from train.pretrain import pretrain  # noqa: E402
from train.stats import verdict  # noqa: E402

GOP, BIN = 12, 8


def arms(quality: int) -> dict[str, dict]:
    return {"plain": {}, "recompress": {"recompress": quality}}


# --- statistics ---------------------------------------------------------------------------------

def _sums(counts: np.ndarray, hits: np.ndarray, dt: np.ndarray, gop: int, bin_width: int):
    """Per bootstrap replicate (counts [B, N]: how often each pair is drawn) and seed (hits [S, N]):
    pairs and hits of phase 0 and of the other phases in each gap bin -> n0, no [B, K]; h0, ho [B, S, K]."""
    bins = np.abs(dt) // bin_width
    onehot = (bins[:, None] == np.arange(bins.max() + 1)[None]).astype(np.float64)   # [N, K]
    zero = (dt % gop == 0)[:, None]
    m0, mo = onehot * zero, onehot * ~zero
    n0, no = counts @ m0, counts @ mo
    h0 = np.stack([counts @ (m0 * h[:, None]) for h in hits], axis=1)
    ho = np.stack([counts @ (mo * h[:, None]) for h in hits], axis=1)
    return n0, no, h0, ho


def _shortfall(n0, no, h0, ho, weights) -> np.ndarray:
    """Expected minus observed accuracy of the phase-0 pairs, pooled over seeds drawn with
    `weights` [B, S] -> [B]. Expected: each phase-0 pair gets the other pairs' accuracy in its bin."""
    s = weights.sum(axis=1, keepdims=True)
    acc0 = np.einsum("bs,bsk->b", weights, h0) / (s[:, 0] * n0.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        other = np.einsum("bs,bsk->bk", weights, ho) / (s * no)
    other = np.where(n0 > 0, other, 0.0)
    expected = (n0 * other).sum(axis=1) / n0.sum(axis=1)
    return expected - acc0


def shortfalls(hits: dict[str, np.ndarray], dt, gop: int = GOP, bin_width: int = BIN, n_boot: int = 10_000,
               seed: int = 0, level: float = 0.95, chunk: int = 500) -> dict:
    """hits {arm: [S, N] 0/1}: each seed's hit on each of the same N unsynchronized pairs (gaps dt
    [N]), the arms' seeds in the same order. -> {arm: {mean, low, high}, 'difference': each later
    arm's shortfall subtracted from the first's, {mean, low, high, verdict} ('better': the later arm
    has the smaller shortfall)}. The bootstrap draws seeds and pairs with replacement, the same
    draws for every arm (paired); every replicate recomputes the expectation too."""
    dt = np.asarray(dt)
    hits = {a: np.atleast_2d(np.asarray(h, np.float64)) for a, h in hits.items()}
    names = list(hits)
    n_seeds, n_pairs = hits[names[0]].shape
    if any(h.shape != (n_seeds, n_pairs) for h in hits.values()) or len(dt) != n_pairs:
        raise ValueError("every arm needs the same seeds and the same pairs (hits [S, N], dt [N])")
    rng = np.random.default_rng(seed)
    reps = {a: [] for a in names}
    for lo in range(0, n_boot, chunk):
        b = min(chunk, n_boot - lo)
        counts = rng.multinomial(n_pairs, np.full(n_pairs, 1 / n_pairs), size=b).astype(np.float64)
        weights = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=b).astype(np.float64)
        for a in names:
            reps[a].append(_shortfall(*_sums(counts, hits[a], dt, gop, bin_width), weights))
    ones, whole = np.ones((1, n_pairs)), np.ones((1, n_seeds))
    alpha = (1 - level) / 2
    out = {}
    for a in names:
        r = np.concatenate(reps[a])
        point = float(_shortfall(*_sums(ones, hits[a], dt, gop, bin_width), whole)[0])
        low, high = np.nanquantile(r, [alpha, 1 - alpha])
        out[a] = {"mean": point, "low": float(low), "high": float(high), "seeds": n_seeds, "pairs": n_pairs}
        reps[a] = r
    first = names[0]
    out["difference"] = {}
    for a in names[1:]:
        d = reps[first] - reps[a]
        low, high = np.nanquantile(d, [alpha, 1 - alpha])
        out["difference"][a] = {"mean": out[first]["mean"] - out[a]["mean"], "low": float(low), "high": float(high),
                                "verdict": verdict(low, high), "against": first}
    return out


# --- the stages ---------------------------------------------------------------------------------

class Experiment:
    def __init__(self, args):
        self.args, self.root = args, Path(args.root)
        self.store = Path(args.store) if args.store else self.root / "store.zarr"
        self.pre = dataclasses.replace(PRETRAIN_PRESETS[args.pretrain_preset], **args.pretrain_overrides)
        self.arms = arms(args.quality)
        self.cache = {}

    def data(self) -> None:
        """The aligned-keyframe dataset and its store (both resumable; kept when finished)."""
        if self.args.store:
            return
        from h36m_prep.build import build
        from h36m_prep.config import BuildConfig
        from h36m_prep.inspect_store import verify
        from h36m_prep.synth.dataset import SynthConfig, write_dataset

        print(f"synthetic dataset, keyframes aligned -> {self.root / 'raw'}", flush=True)
        write_dataset(self.root / "raw", SynthConfig(frames=self.args.frames, scale=self.args.scale,
                                                     keyframes="aligned"), workers=self.args.workers)
        print(f"store -> {self.store}", flush=True)
        build(self.root / "raw", self.store, BuildConfig(), workers=self.args.workers)
        problems = verify(self.store)
        if problems:
            raise SystemExit("\n".join(f"error: {p}" for p in problems))

    def _earlier(self) -> dict:
        out = Path(self.args.out)
        if not out.exists():
            return {}
        doc = json.loads(out.read_text())
        same = (doc.get("store_fingerprint") == self.fingerprint and doc.get("quality") == self.args.quality
                and doc.get("pretrain_config") == json.loads(json.dumps(dataclasses.asdict(self.pre))))
        if not same:
            print(f"note: {out} was made with another store or other settings; its results are not reused", flush=True)
            return {}
        return doc.get("stages", {})

    def stage(self, name: str, work):
        if name not in self.cache:
            self.cache[name] = work()
            self.write()
        return self.cache[name]

    def run_folder(self, arm: str, seed: int) -> Path:
        out = self.root / f"pretrain_{arm}_s{seed}"
        if not (out / "metrics.json").exists():
            cfg = dataclasses.replace(self.pre, seed=seed, **self.arms[arm])
            print(f"pretrain {out.name} ({cfg.steps} steps)", flush=True)
            pretrain(self.store, out, cfg, resume=(out / "checkpoint.pt").exists(), progress=self.args.progress)
        return out

    def check(self, arm: str, seed: int) -> dict:
        def work():
            run = self.run_folder(arm, seed)
            print(f"phase check of {run.name}", flush=True)
            subjects = S.subjects_of(S.open_store(self.store), "test")
            return phase_check(load_sync_model(run), self.store, subjects, pairs=self.args.pairs, per_pair=True)
        return self.stage(f"phase_{arm}_s{seed}", work)

    def run(self) -> dict:
        self.data()
        self.fingerprint = store_fingerprint(self.store)
        self.cache = self._earlier()
        for seed in self.args.seeds:
            for arm in self.arms:
                self.stage(f"pretrain_{arm}_s{seed}",
                           lambda: _brief(json.loads((self.run_folder(arm, seed) / "metrics.json").read_text())))
                self.check(arm, seed)
        return self.write()

    def write(self) -> dict:
        doc = {"store": str(self.store), "store_fingerprint": self.fingerprint, "quality": self.args.quality,
               "arms": self.arms, "seeds": list(self.args.seeds), "gop": GOP, "bin_width": BIN,
               "pretrain_config": dataclasses.asdict(self.pre),
               "statistics": "phase-0 shortfall (expected minus observed accuracy); paired bootstrap over seeds "
                             "and pairs, 95 % percentile intervals, 10000 replicates",
               "summary": summary(self.cache, self.arms, self.args.seeds), "stages": self.cache,
               "written": time.strftime("%Y-%m-%d %H:%M:%S")}
        out = Path(self.args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_json(out, doc)
        if doc["summary"]:
            print(report(doc), flush=True)
        return doc


def summary(stages: dict, arm_changes: dict, seeds) -> dict:
    """Over the seeds every arm has finished: each arm's phase table pooled over seeds, its pretext
    accuracies, the shortfalls and their paired difference."""
    done = [s for s in seeds if all(f"phase_{a}_s{s}" in stages for a in arm_changes)]
    if not done:
        return {}
    checks = {a: [stages[f"phase_{a}_s{s}"] for s in done] for a in arm_changes}
    dt = np.asarray(checks["plain"][0]["dt"])
    if any(c["dt"] != checks["plain"][0]["dt"] for cs in checks.values() for c in cs):
        raise ValueError("the phase checks were made on different pairs; delete their stages to redo them")
    hits = {a: np.array([c["hit"] for c in cs]) for a, cs in checks.items()}
    out = {"seeds": done, "shortfall": shortfalls(hits, dt), "arms": {}}
    for a, cs in checks.items():
        rows = [{"phase": p, "pairs": cs[0]["by_phase"][p]["pairs"],
                 "accuracy": float(np.mean([c["by_phase"][p]["accuracy"] for c in cs])),
                 "expected": float(np.mean([c["by_phase"][p]["expected"] for c in cs]))} for p in range(GOP)]
        pretext = [stages[f"pretrain_{a}_s{s}"] for s in done if f"pretrain_{a}_s{s}" in stages]
        out["arms"][a] = {"by_phase": rows, "overall": float(np.mean([c["overall"] for c in cs])),
                          **{k: float(np.mean([p[k] for p in pretext])) for k in
                             ("test_acc_sync", "test_acc_flip", "train_acc_sync", "train_acc_flip") if pretext}}
    return out


def report(doc: dict) -> str:
    """The experiment's tables in Markdown, from its JSON alone."""
    s = doc["summary"]
    names = list(doc["arms"])
    if not s:
        done = ", ".join(sorted(doc.get("stages", {}))) or "nothing"
        return f"No seed has finished in every arm ({', '.join(names)}) yet; finished stages: {done}."
    lines = [f"Keyframes aligned; unsynchronized test pairs by dt mod {doc['gop']}, accuracy (expected from the "
             f"gaps), mean over seeds {', '.join(map(str, s['seeds']))}:", "",
             "| dt mod 12 | pairs | " + " | ".join(names) + " |", "|---:|---:|" + "---:|" * len(names)]
    for p in range(doc["gop"]):
        cells = [f"{s['arms'][a]['by_phase'][p]['accuracy']:.3f} ({s['arms'][a]['by_phase'][p]['expected']:.3f})"
                 for a in names]
        lines.append(f"| {p} | {s['arms'][names[0]]['by_phase'][p]['pairs']} | " + " | ".join(cells) + " |")
    lines += ["", "| arm | phase-0 shortfall [95 %] | test sync | test flip | training sync |",
              "|---|---|---:|---:|---:|"]
    for a in names:
        m, arm = s["shortfall"][a], s["arms"][a]
        lines.append(f"| {a} | {m['mean']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}] "
                     f"| {arm.get('test_acc_sync', 0):.3f} "
                     f"| {arm.get('test_acc_flip', 0):.3f} | {arm.get('train_acc_sync', 0):.3f} |")
    for a, d in s["shortfall"]["difference"].items():
        lines += ["", f"{a} against {d['against']}: the shortfall smaller by {d['mean']:+.3f} "
                      f"[{d['low']:+.3f}, {d['high']:+.3f}]: {d['verdict']}"]
    return "\n".join(lines)


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default="runs/keyframe_phase", help="one folder per stage under here")
    ap.add_argument("--store", default=None,
                    help="a store of videos with aligned keyframes [default: built under ROOT]")
    ap.add_argument("--out", default="benchmarks/results/keyframe_phase.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="pretraining seeds; each arm is pretrained once a seed (about 20-40 minutes on 2 cores)")
    ap.add_argument("--quality", type=int, default=50,
                    help="--recompress of the recompress arm (chosen before any run)")
    ap.add_argument("--pairs", type=int, default=12000, help="unsynchronized test pairs of each phase check")
    ap.add_argument("--frames", type=int, default=250, help="frames per synthetic sequence (the demo's)")
    ap.add_argument("--scale", type=float, default=0.5, help="video resolution (the demo's)")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--pretrain-preset", default="cpu")
    ap.add_argument("--pretrain-set", nargs="*", default=[], metavar="FIELD=VALUE")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the tables of --out in Markdown and stop")
    args = ap.parse_args(argv)
    args.pretrain_overrides = _overrides(PRETRAIN_PRESETS[args.pretrain_preset], args.pretrain_set)
    return args


def main(argv=None) -> dict:
    return run_or_report(parse(argv), report, Experiment)


if __name__ == "__main__":
    main()
