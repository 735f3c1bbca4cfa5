"""`sync-train eval`: a finetuned pose model on the test subjects (paper, section 4), and the
figures of a pretrained synchronization model.

- report.json / report.md: MPJPE, NMPJPE, PMPJPE overall, per action and per subject, on every
  64th frame (frame % 64 == 0) of the test subjects, all cameras.
- qualitative.png (Fig. 3): test crops with the ground-truth and the predicted skeletons.
- sync_vs_gap.png (Fig. 4): accuracy of the synchronization head on pairs whose time gap is
  drawn from [dt - 7, dt + 8], test subjects against two training subjects, with standard-error
  bars (enough pairs per gap for at most 0.02), on images in the background mode the model was
  pretrained with.
- retrieval.png (Fig. 6): queries from S9, one column per training subject (S1, S5, S6, S7,
  S8): that subject's frame with the highest predicted probability of being synchronized with
  the query.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from h36m_prep import store as S
from models import SiameseSync
from pairloader import PoseLoader, unstandardize
from h36m_prep.store import StoreReader
from pairloader.fetch import fetch_image
from pairloader.index import load_index
from pairloader.reference import compose
from pairloader.draws import view_affine
from pairloader.sampler import KEPT, REMOVED

from . import checkpoint
from .config import PretrainConfig
from .finetune import load_pose_model
from .metrics import ROOT_CORRECTION, mpjpe, nmpjpe, pmpjpe, summary

FIG_TRAIN_SUBJECTS = ("S1", "S5")
GAPS = tuple(range(8, 121, 16))  # centres dt of the gap bins [dt - 7, dt + 8]
ROOT_NOTE = ("The root joint is fixed at zero, so it adds 0 to the mean over 17 joints: MPJPE and NMPJPE "
             "are multiplied by 17/16 (the mean over the 16 predicted joints), as in the paper. PMPJPE "
             "aligns all 17 joints and is not corrected.")


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@torch.no_grad()
def predict(model, store, input_size: int, mean, std, every: int = 64, batch: int = 32,
            backend: str = "torch", workers: int = 0, background: str = "removed", split: str = "test",
            subjects=None) -> dict:
    """Predictions on the frames of `split` (of `subjects`: a validation subject's training frames)
    with frame % every == 0: rows [N], pred and gt [N, 17, 3] mm."""
    device = _device()
    was_training = model.training
    model = model.to(device).eval()
    loader = PoseLoader(store, batch_size=batch, split=split, every=every, backend=backend, workers=workers,
                        flip=False, out_size=input_size, stats=(mean, std), background=background,
                        subjects=subjects, evaluation=True)
    rows, pred, gt = [], [], []
    for b in loader:
        v = b["valid"]
        out = unstandardize(model(b["image"].to(device)).float().cpu(), mean, std)
        rows.append(b["row"][v])
        pred.append(out[v])
        gt.append(b["pose"][v])
    model.train(was_training)
    return {"rows": torch.cat(rows).numpy(), "pred": torch.cat(pred).double().numpy(),
            "gt": torch.cat(gt).double().numpy()}


def metrics_table(store, result: dict) -> dict:
    """Metrics overall, per action and per subject (mm)."""
    g = S.open_store(store)
    rows = result["rows"]
    action = g["action"].get_orthogonal_selection((rows,))
    subject = g["subject"].get_orthogonal_selection((rows,))
    out = {"overall": summary(result["pred"], result["gt"]), "per_action": {}, "per_subject": {}}
    for key, col, names in (("per_action", action, g.attrs["actions"]), ("per_subject", subject, g.attrs["subjects"])):
        for i, name in enumerate(names):
            sel = col == i
            if sel.any():
                out[key][name] = summary(result["pred"][sel], result["gt"][sel])
    return out


def per_image(store, result: dict) -> dict:
    """Every test image's errors (mm; MPJPE and NMPJPE with the 17/16 correction, so that their
    means are the report's) with what identifies it: store row, subject, sequence (the store's
    sequence index), camera and frame. An instant is (subject, sequence, frame)."""
    g = S.open_store(store)
    rows = result["rows"]
    col = lambda name: g[name].get_orthogonal_selection((rows,))
    names, cameras = list(g.attrs["subjects"]), list(g.attrs["cameras"])
    pred, gt = result["pred"], result["gt"]
    return {"row": rows.tolist(), "subject": [names[i] for i in col("subject")],
            "sequence": col("sequence").tolist(), "camera": [cameras[i] for i in col("camera")],
            "frame": col("frame").tolist(),
            "mpjpe": np.round(mpjpe(pred, gt) * ROOT_CORRECTION, 2).tolist(),
            "nmpjpe": np.round(nmpjpe(pred, gt) * ROOT_CORRECTION, 2).tolist(),
            "pmpjpe": np.round(pmpjpe(pred, gt), 2).tolist()}


def subset(images: dict, every: int) -> dict:
    """The per-image table restricted to frames with frame % every == 0 (the paper's every 64th
    from a dense evaluation)."""
    keep = [i for i, f in enumerate(images["frame"]) if f % every == 0]
    return {k: [v[i] for i in keep] for k, v in images.items()}


def overall(images: dict) -> dict:
    """The overall metrics of a per-image table (its means)."""
    return {m: float(np.mean(images[m])) for m in ("mpjpe", "nmpjpe", "pmpjpe")} | {"n": len(images["row"])}


def markdown(report: dict) -> str:
    """The report as a Markdown table, one row per action, then per subject and overall."""
    lines = [f"# Evaluation of `{report['checkpoint']}`", "",
             f"Init `{report['init']}`, protocol {report['protocol']}, frozen {report['freeze']}, background "
             f"{report['background']}; test subjects "
             f"{' '.join(report['test_subjects'])}, every {report['every']}th frame, all cameras "
             f"({report['overall']['n']} images).", "", f"{ROOT_NOTE}", "",
             "| | MPJPE | NMPJPE | PMPJPE | images |", "|---|---:|---:|---:|---:|"]
    for title, group in (("", report["per_action"]), ("subject ", report["per_subject"]),
                         ("", {"**All**": report["overall"]})):
        for name, m in group.items():
            lines.append(f"| {title}{name} | {m['mpjpe']:.1f} | {m['nmpjpe']:.1f} | {m['pmpjpe']:.1f} | {m['n']} |")
    return "\n".join(lines) + "\n"


def evaluate(ckpt: str | Path, store: str | Path, out: str | Path, pretrain: str | Path | None = None,
             every: int = 64, batch: int = 32, figures: bool = True, background: str | None = None) -> dict:
    """Evaluate the finetune run `ckpt` on `store`; write the report and figures into `out`.

    pretrain: the pretrain run whose synchronization head draws figures (b) and (c); default
    the finetune's init when that is a run folder. Without one those two are left out.
    background: 'removed' or 'kept' (default: what the fine-tuning run used).
    """
    model, cfg, mean, std = load_pose_model(ckpt)
    background = background or cfg.background
    result = predict(model, store, cfg.input_size, mean, std, every=every, batch=batch, background=background)
    g = S.open_store(store)
    test = S.subjects_of(g, "test")
    report = {"checkpoint": str(ckpt), "init": cfg.init, "protocol": cfg.protocol, "freeze": cfg.freeze,
              "background": background, "finetune_background": cfg.background, "store": str(store),
              "test_subjects": test, "every": every, "root_correction": ROOT_CORRECTION, "note": ROOT_NOTE,
              **metrics_table(store, result), "per_image": per_image(store, result)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if pretrain is None and cfg.init not in ("random",) and not cfg.init.startswith("imagenet:"):
        pretrain = cfg.init
    report["figures"] = {}
    if figures:
        report["figures"]["qualitative"] = str(qualitative(store, result, out / "qualitative.png"))
        if pretrain is not None:
            sync = load_sync_model(pretrain)
            report["sync_accuracy_by_gap"] = sync_vs_gap(sync, store, out / "sync_vs_gap.png")
            report["figures"]["sync_vs_gap"] = str(out / "sync_vs_gap.png")
            report["figures"]["retrieval"] = str(retrieval(sync, store, out / "retrieval.png"))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    return report


# --- figures -------------------------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def project(pose: np.ndarray, K: np.ndarray, depth: float) -> np.ndarray:
    """[17, 3] root-relative mm in the virtual camera -> [17, 2] crop pixels (root at `depth`)."""
    X = pose + np.array([0.0, 0.0, depth])
    uv = X @ K.T
    return uv[:, :2] / uv[:, 2:]


def _spread(n_total: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def qualitative(store, result: dict, path: Path, count: int = 6) -> Path:
    """Fig. 3: crops with the ground truth (green) and the prediction (red), and both in 3D."""
    from h36m_prep.geometry import PARENTS

    plt = pyplot()
    g = S.open_store(store)
    reader = StoreReader(store)
    pick = _spread(len(result["rows"]), count)
    fig = plt.figure(figsize=(2.6 * len(pick), 5.4))
    for i, k in enumerate(pick):
        row = int(result["rows"][k])
        K, depth = g["K"][row], float(np.linalg.norm(g["root_cam"][row]))
        ax = fig.add_subplot(2, len(pick), i + 1)
        ax.imshow(reader.image(row))
        for pose, colour in ((result["gt"][k], "lime"), (result["pred"][k], "red")):
            uv = project(pose, K, depth)
            for j, p in enumerate(PARENTS):
                if p >= 0:
                    ax.plot(uv[[p, j], 0], uv[[p, j], 1], color=colour, lw=1.5)
        err = float(mpjpe(result["pred"][k][None], result["gt"][k][None])[0]) * ROOT_CORRECTION
        ax.set_title(f"row {row}: {err:.0f} mm", fontsize=8)
        ax.axis("off")
        ax3 = fig.add_subplot(2, len(pick), len(pick) + i + 1, projection="3d")
        for pose, colour in ((result["gt"][k], "green"), (result["pred"][k], "red")):
            for j, p in enumerate(PARENTS):
                if p >= 0:  # camera frame: x right, y down, z forward -> plot x, z, -y
                    ax3.plot(pose[[p, j], 0], pose[[p, j], 2], -pose[[p, j], 1], color=colour, lw=1.2)
        ax3.set_box_aspect((1, 1, 1))
        lim = 1000
        ax3.set(xlim=(-lim, lim), ylim=(-lim, lim), zlim=(-lim, lim), xticklabels=[], yticklabels=[],
                zticklabels=[])
        ax3.view_init(elev=10, azim=-80)
    fig.suptitle("test subjects: ground truth (green) and prediction (red)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


class SyncModel:
    """A pretrained Siamese network with what its figures need: images as it was trained on
    (the centre of the training crop window; the background kept if it was pretrained with the
    background kept, else removed: the deterministic member of its mix), features, sync logits."""

    def __init__(self, model: SiameseSync, cfg: PretrainConfig):
        self.model, self.cfg, self.device = model.to(_device()).eval(), cfg, _device()
        sc = cfg.sampler_config()
        self.window = 0.5 * (sc.window[0] + sc.window[1])
        self.bg_mode = KEPT if cfg.background == "kept" else REMOVED
        self.background = "kept" if cfg.background == "kept" else "removed"

    def images(self, reader: StoreReader, rows, crop: int) -> torch.Tensor:
        a = np.empty((2, 3))
        view_affine(a, 0.5, 0.5, 0.5, 0.5, False, crop, self.cfg.input_size, self.window, self.window, 0.0, 0.0)
        return torch.stack([compose(*fetch_image(reader, int(r), self.bg_mode, -1), a, self.cfg.input_size)
                            for r in rows])

    @torch.no_grad()
    def features(self, reader, rows, crop: int, batch: int = 128) -> torch.Tensor:
        """[len(rows), F]; each distinct row is computed once."""
        unique, inverse = np.unique(np.asarray(rows, np.int64), return_inverse=True)
        out = [self.model.features(self.images(reader, unique[i:i + batch], crop).to(self.device)).float().cpu()
               for i in range(0, len(unique), batch)]
        return torch.cat(out)[torch.from_numpy(inverse.reshape(-1))] if out else torch.zeros(0, 1)

    @torch.no_grad()
    def sync_logit(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        from models.siamese import fuse

        return self.model.omega_sync(fuse(f1, f2, self.model.fusion))[:, 0]


def load_sync_model(run: str | Path) -> SyncModel:
    run = Path(run)
    try:
        cfg = PretrainConfig.load(run / "config.json")
        state = checkpoint.load(run / "checkpoint.pt")
    except (OSError, TypeError, ValueError):
        raise ValueError(f"{run}: not a pretrain run folder; pass the --out of sync-train pretrain") from None
    model = SiameseSync(cfg.arch, cfg.fusion, signed=cfg.signed)
    model.load_state_dict(state["model"])
    return SyncModel(model, cfg)


def _anchor_candidates(store, subjects):
    """(index, rows): the written rows of `subjects` whose sequence has a second camera."""
    index = load_index(store, "train", moving_only=False)
    ok = S.row_mask(S.open_store(store), subjects=subjects)
    ok &= (index.unit_start[index.row_seq] >= 0).sum(axis=1) >= 2  # a second camera exists
    return index, np.flatnonzero(ok)


def _other_camera(rng, index, seq: int, camera: int) -> int:
    """A camera of sequence `seq` other than `camera`, uniformly."""
    return int(rng.choice([k for k in np.flatnonzero(index.unit_start[seq] >= 0) if k != camera]))


def gap_pairs(store, subjects, gaps, per_gap: int, seed: int = 0) -> dict:
    """For each gap centre dt: per_gap anchors (any camera and frame of `subjects`) with a
    synchronized partner (another camera, same frame) and an unsynchronized one (another
    camera, |t2 - t| drawn uniformly from [dt - 7, dt + 8]). Gaps longer than the sequences
    are left out. -> {dt: (anchor, sync, unsync) rows}."""
    index, candidates = _anchor_candidates(store, subjects)
    rng = np.random.default_rng(seed)
    length = index.seq_len[index.row_seq[candidates]]
    out = {}
    for dt in gaps:
        fits = candidates[length > dt + 8]
        if not len(fits):
            continue
        anchors, syncs, unsyncs = [], [], []
        while len(anchors) < per_gap:
            r = int(rng.choice(fits))
            s, c, t = index.row_seq[r], index.row_cam[r], index.row_t[r]
            gap = int(rng.integers(dt - 7, dt + 9))
            t2 = t + gap if rng.random() < 0.5 else t - gap
            e = int(index.seq_every[s])  # a subsampled sequence stores every e-th frame: the nearest stored one
            t2 = t + e * round((t2 - t) / e)
            if not 0 <= t2 < index.seq_len[s]:
                t2 = 2 * t - t2  # the other direction; with seq_len > dt + 8 one of them may fit
            if not 0 <= t2 < index.seq_len[s]:
                continue
            c2 = _other_camera(rng, index, s, c)
            anchors.append(r)
            syncs.append(index.row(s, c2, t))
            unsyncs.append(index.row(s, c2, t2))
        out[dt] = tuple(np.array(x) for x in (anchors, syncs, unsyncs))
    return out


def sync_vs_gap(sync: SyncModel, store, path: Path, per_gap: int = 320, seed: int = 0) -> dict:
    """Fig. 4: synchronization accuracy against the time gap (balanced synchronized and not),
    2 * per_gap pairs per gap: a standard error of at most 0.02 with the default 320.
    -> {group: {subjects, gaps, accuracy, stderr, pairs}, background}, the figure's data."""
    plt = pyplot()
    g = S.open_store(store)
    reader, crop = StoreReader(store), int(g.attrs["crop_size"])
    train = S.subjects_of(g, "train")
    groups = {"test": S.subjects_of(g, "test"), "train": [s for s in FIG_TRAIN_SUBJECTS if s in train] or train[:2]}
    fig, ax = plt.subplots(figsize=(5, 3.4))
    data = {"background": sync.background, "pretrain_background": sync.cfg.background}
    for label, subjects in groups.items():
        gaps, acc, err = [], [], []
        for dt, (a, s, u) in gap_pairs(store, subjects, GAPS, per_gap, seed).items():
            f = sync.features(reader, np.concatenate([a, s, u]), crop)
            fa, fs, fu = f[:len(a)], f[len(a):2 * len(a)], f[2 * len(a):]
            hit = (sync.sync_logit(fa, fs) > 0).sum() + (sync.sync_logit(fa, fu) <= 0).sum()
            p = float(hit) / (2 * len(a))
            gaps.append(dt)
            acc.append(p)
            err.append(float(np.sqrt(p * (1 - p) / (2 * len(a)))))
        data[label] = {"subjects": subjects, "gaps": gaps, "accuracy": acc, "stderr": err, "pairs": 2 * per_gap}
        ax.errorbar(gaps, acc, yerr=err, fmt="o-", capsize=3, label=f"{label}: {' '.join(subjects)}")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_title(f"pretrained with background {sync.cfg.background}; shown {sync.background}; "
                 f"{2 * per_gap} pairs a gap, +-1 s.e.", fontsize=8)
    ax.set(xlabel="time gap dt (frames; drawn from [dt-7, dt+8])", ylabel="synchronization accuracy", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data


def retrieval(sync: SyncModel, store, path: Path, queries: int = 4, gallery_every: int = 4,
              query_subject: str = "S9") -> Path:
    """Fig. 6: queries from `query_subject` (else the first test subject), one column per
    training subject: that subject's frame (every gallery_every-th) that the network finds most
    synchronized with the query."""
    plt = pyplot()
    g = S.open_store(store)
    reader, crop = StoreReader(store), int(g.attrs["crop_size"])
    frame, cameras, cam = g["frame"][:], g.attrs["cameras"], g["camera"][:]
    test_subjects, train_subjects = S.subjects_of(g, "test"), S.subjects_of(g, "train")
    if not test_subjects or not train_subjects:
        raise ValueError(f"{store}: retrieval needs test and training subjects")
    qs = query_subject if query_subject in test_subjects else test_subjects[0]
    test = S.rows(g, subjects=[qs], every=64)
    query = test[_spread(len(test), queries)]
    fq = sync.features(reader, query, crop)
    best = {}
    for s in train_subjects:
        gallery = S.rows(g, "train", [s], every=gallery_every)
        fg = sync.features(reader, gallery, crop)
        best[s] = [gallery[int(sync.sync_logit(q[None].expand_as(fg), fg).argmax())] for q in fq]
    columns = 1 + len(train_subjects)
    fig, axes = plt.subplots(len(query), columns, figsize=(1.9 * columns, 2.1 * len(query)), squeeze=False)
    for i, q in enumerate(query):
        cells = [(q, f"query {qs} cam {cameras[cam[q]][-3:]} t{frame[q]}")]
        cells += [(best[s][i], f"{s} cam {cameras[cam[best[s][i]]][-3:]} t{frame[best[s][i]]}") for s in train_subjects]
        for ax, (row, title) in zip(axes[i], cells):
            ax.imshow(reader.image(int(row)))
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"retrieval: {qs} queries, the most synchronized frame of each training subject "
                 f"(every {gallery_every}th frame)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def phase_pairs(store, subjects, pairs: int, d_min: int = 4, d_max: int = 128, seed: int = 0) -> dict:
    """Unsynchronized pairs for the keyframe-phase check: anchors of `subjects` (any camera and
    frame), partners in another camera |dt| frames away, |dt| uniform in [d_min, d_max), both
    stored frames. -> {anchor, partner, dt} arrays."""
    index, candidates = _anchor_candidates(store, subjects)
    rng = np.random.default_rng(seed)
    anchor, partner, gaps = [], [], []
    while len(anchor) < pairs:
        r = int(rng.choice(candidates))
        s, c, t = index.row_seq[r], index.row_cam[r], index.row_t[r]
        dt = int(rng.integers(d_min, d_max)) * (1 if rng.random() < 0.5 else -1)
        if not 0 <= t + dt < index.seq_len[s] or dt % int(index.seq_every[s]):
            continue
        c2 = _other_camera(rng, index, s, c)
        anchor.append(r)
        partner.append(index.row(s, c2, t + dt))
        gaps.append(dt)
    return {"anchor": np.array(anchor), "partner": np.array(partner), "dt": np.array(gaps)}


def phase_check(sync: SyncModel, store, subjects, pairs: int = 4000, gop: int = 12, bin_width: int = 8,
                seed: int = 0, per_pair: bool = False) -> dict:
    """The sync head's accuracy on unsynchronized pairs by dt mod gop, against what its accuracy
    by gap predicts for those same pairs. Cameras whose keyframes share one phase put every
    synchronized pair, and every unsynchronized pair with dt % gop == 0, on the same compression
    phase: a network that used that cue would call those unsynchronized pairs synchronized more
    often than their gaps predict. Expected: for each pair of a class, the accuracy of the other
    classes' pairs in its gap bin (bin_width frames); the class's expectation is the mean over its pairs.
    The pairs depend on the store, the subjects and `seed` only: every model is checked on the same
    pairs, so two models compare pair by pair. per_pair: also each pair's gap and hit (dt, hit).
    -> {by_phase: [{phase, pairs, accuracy, expected, stderr}], overall, subjects}."""
    g = S.open_store(store)
    reader, crop = StoreReader(store), int(g.attrs["crop_size"])
    p = phase_pairs(store, subjects, pairs, sync.cfg.d_min, sync.cfg.d_max, seed)
    f = sync.features(reader, np.concatenate([p["anchor"], p["partner"]]), crop)
    hit = (sync.sync_logit(f[:pairs], f[pairs:]) <= 0).numpy().astype(np.float64)
    bins = np.abs(p["dt"]) // bin_width
    rows = []
    for phase in range(gop):
        sel = p["dt"] % gop == phase
        # the other phases' accuracy in each gap bin, at this class's gaps
        other = {b: hit[~sel & (bins == b)].mean() for b in np.unique(bins[sel])}
        expected = float(np.mean([other[b] for b in bins[sel]]))
        acc = float(hit[sel].mean())
        rows.append({"phase": phase, "pairs": int(sel.sum()), "accuracy": acc, "expected": expected,
                     "stderr": float(np.sqrt(acc * (1 - acc) / max(sel.sum(), 1)))})
    out = {"subjects": list(subjects), "pairs": pairs, "gop": gop, "bin_width": bin_width,
           "overall": float(hit.mean()), "by_phase": rows}
    if per_pair:
        out |= {"dt": p["dt"].tolist(), "hit": hit.astype(int).tolist()}
    return out
