"""`sync-train probe`: what the frozen features know, without fine-tuning's dynamics.

Pose probe: the pooled features of a backbone (layer4, as the heads see them, and layer3 pooled),
frozen, on the images fine-tuning shows (centred view, background removed); a ridge regression
from the standardized features to the standardized 3D pose (16 non-root joints), fitted on the
protocol's training frames. Its strength is chosen on a validation subject (a training subject;
for protocol All it is held out of the fit while choosing, then the fit is redone on all the
protocol's subjects), never on the test subjects. Reported on the test frames (every 8th frame,
all cameras): MPJPE and PMPJPE, with a bootstrap interval over test instants.

Mirror probe: a linear classifier (ridge on +-1 labels) on the same frozen features telling a
test image from its mirror image, trained on training subjects, tested on the test subjects, scored
two ways: each image alone (the sign of its score), and each pair (the mirror scored above its
original; ties count half), which a constant bias cannot pass and whose interval is not
degenerate when the classifier says the same for every image. The
synthetic people look the same from left and right, so with the background removed chance is
expected; above chance says the image (the mask's edge, the background, the lighting) shows the
mirror, which the flip task could then read without understanding the pose.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from h36m_prep import store as S
from models.backbone import backbone, through_layer3
from pairloader import pose_stats
from h36m_prep.store import StoreReader
from pairloader.pose import PosePlan, require_poses
from pairloader.render import render_cpu
from pairloader.draws import view_affine
from pairloader.sampler import REMOVED, VIEW

from . import checkpoint
from .config import PROTOCOLS, PretrainConfig
from .metrics import ROOT_CORRECTION, mpjpe, pmpjpe
from .stats import format_interval, instant_ids, mean_interval

LAYERS = ("layer3", "layer4")
ALPHAS = tuple(10.0 ** np.arange(-2, 5))  # ridge strengths, relative to the number of features


# --- the linear maps -----------------------------------------------------------------------

def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalized intercept: (W [F, T], b [T]) minimising
    |X W + b - Y|^2 + alpha * F * |W|^2 (alpha per feature, so one grid serves every width)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    A = Xc.T @ Xc + alpha * X.shape[1] * np.eye(X.shape[1])
    W = np.linalg.solve(A, Xc.T @ (Y - my))
    return W, my - mx @ W


def choose_alpha(X_fit, Y_fit, X_val, score, alphas=ALPHAS) -> tuple[float, dict]:
    """The alpha of `alphas` whose fit on (X_fit, Y_fit) gives the lowest score(prediction on X_val).
    -> (alpha, {alpha: score})."""
    scores = {}
    for a in alphas:
        W, b = fit_ridge(X_fit, Y_fit, a)
        scores[float(a)] = float(score(X_val @ W + b))
    return min(scores, key=scores.get), scores


class Standardizer:
    """Per-feature mean and standard deviation of the fitting features, applied to any features."""

    def __init__(self, X: np.ndarray):
        self.mean, self.std = X.mean(0), np.maximum(X.std(0), 1e-6)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std


# --- features ------------------------------------------------------------------------------

def pooled(phi: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """{layer3, layer4}: the globally average-pooled outputs of those stages of a ResNet backbone."""
    x3 = through_layer3(phi, x)
    x4 = phi.layer4(x3)
    return {"layer3": x3.mean((2, 3)), "layer4": x4.mean((2, 3))}


def load_backbone(init: str, arch: str, seed: int) -> tuple[torch.nn.Module, str, int | None]:
    """(backbone in eval mode, arch, the run's input size or None) of a pretrain run folder, or a
    random-init backbone of `arch` drawn with `seed` (as fine-tuning from random init draws it)."""
    if init == "random":
        torch.manual_seed(seed)
        return backbone(arch).eval(), arch, None
    run = Path(init)
    try:
        cfg = PretrainConfig.load(run / "config.json")
        state = checkpoint.load(run / "checkpoint.pt")["model"]
    except (OSError, TypeError, ValueError, KeyError):
        raise ValueError(f"init={init!r}: not a pretrain run folder; pass the --out of sync-train pretrain "
                         "or 'random'") from None
    phi = backbone(cfg.arch)
    phi.load_state_dict({k.removeprefix("phi."): v for k, v in state.items() if k.startswith("phi.")})
    return phi.eval(), cfg.arch, cfg.input_size


def plan_rows(rows: np.ndarray, mirrored: np.ndarray, crop: int, out_size: int, window: float = VIEW,
              bg_mode: int = REMOVED) -> PosePlan:
    """The centred view of each row as fine-tuning and evaluation show it (mirrored where asked)."""
    affine = np.empty((len(rows), 2, 3))
    for i, m in enumerate(mirrored):
        view_affine(affine[i], 0.5, 0.5, 0.5, 0.5, bool(m), crop, out_size, window, window, 0.0, 0.0)
    return PosePlan(np.asarray(rows, np.int64), np.asarray(mirrored, bool), affine, np.ones(len(rows), bool), bg_mode)


@torch.no_grad()
def features(phi, store, rows, input_size: int, mirrored=None, batch: int = 256, progress=None) -> dict:
    """{layer: float32 [len(rows), F]} of the frozen backbone on the rows' images."""
    reader = StoreReader(store)
    crop = int(S.open_store(store).attrs["crop_size"])
    mirrored = np.zeros(len(rows), bool) if mirrored is None else np.asarray(mirrored, bool)
    out = {k: [] for k in LAYERS}
    for i in range(0, len(rows), batch):
        plan = plan_rows(rows[i:i + batch], mirrored[i:i + batch], crop, input_size)
        f = pooled(phi, render_cpu(reader, plan, input_size, "opencv"))
        for k in LAYERS:
            out[k].append(f[k].numpy())
        if progress:
            progress(min(i + batch, len(rows)), len(rows))
    return {k: np.concatenate(v) for k, v in out.items()}


# --- the probes ----------------------------------------------------------------------------

def pose_probe(init: str, store, protocol: str = "S1", val_subject: str = "S8", arch: str = "resnet18n",
               input_size: int | None = None, seed: int = 0, train_every: int = 4, test_every: int = 8,
               progress: bool = False) -> dict:
    """The pose probe of one backbone (see the module's docstring). -> report."""
    g = S.open_store(store)
    require_poses(g, store)
    phi, arch, run_size = load_backbone(init, arch, seed)
    size = input_size or run_size or 64
    subjects = PROTOCOLS[protocol]
    train_subjects = S.subjects_of(g, "train")
    if val_subject not in train_subjects:
        raise ValueError(f"--val-subject {val_subject}: not a training subject of {store} "
                         f"(it has {' '.join(train_subjects)})")
    if set(subjects) <= {val_subject}:
        raise ValueError(f"--val-subject {val_subject} is protocol {protocol}'s only subject; choose another "
                         "training subject to choose the ridge strength on")
    fit_rows = S.rows(g, "train", subjects, moving=True, every=train_every)
    val_rows = S.rows(g, "train", [val_subject], every=test_every)
    test_rows = S.rows(g, "test", every=test_every)
    rows = np.concatenate([fit_rows, val_rows, test_rows])
    tell = (lambda n, total: print(f"\rprobe features {n}/{total}", end="", flush=True)) if progress else None
    feats = features(phi, store, rows, size, progress=tell)
    if progress:
        print(flush=True)
    pose = g["pose3d"].get_orthogonal_selection((rows,)).astype(np.float64)
    mean, std = pose_stats(store, subjects)
    target = ((pose - mean) / std)[:, 1:].reshape(len(rows), -1)
    n_fit, n_val = len(fit_rows), len(val_rows)
    fit, val, test = slice(0, n_fit), slice(n_fit, n_fit + n_val), slice(n_fit + n_val, None)
    choose_fit = np.flatnonzero(g["subject"].get_orthogonal_selection((fit_rows,))
                                != list(g.attrs["subjects"]).index(val_subject))
    names, subj = list(g.attrs["subjects"]), g["subject"].get_orthogonal_selection((test_rows,))
    inst = instant_ids(subj, g["sequence"].get_orthogonal_selection((test_rows,)),
                       g["frame"].get_orthogonal_selection((test_rows,)))

    def to_mm(y):
        p = np.concatenate([np.zeros((len(y), 1, 3)), y.reshape(len(y), 16, 3)], axis=1) * std + mean
        p[:, 0] = 0.0
        return p

    report = {"init": str(init), "arch": arch, "input_size": size, "protocol": protocol, "seed": seed,
              "fit_subjects": list(subjects), "val_subject": val_subject, "fit_images": n_fit,
              "val_images": n_val, "test_images": len(test_rows), "train_every": train_every,
              "test_every": test_every, "layers": {},
              "test_rows": test_rows.tolist(), "test_subject": [names[i] for i in subj],
              "test_sequence": g["sequence"].get_orthogonal_selection((test_rows,)).tolist(),
              "test_frame": g["frame"].get_orthogonal_selection((test_rows,)).tolist()}
    for layer in LAYERS:
        X = feats[layer].astype(np.float64)
        norm = Standardizer(X[fit][choose_fit])
        score = lambda y: mpjpe(to_mm(y), pose[val]).mean()
        alpha, scores = choose_alpha(norm(X[fit][choose_fit]), target[fit][choose_fit], norm(X[val]), score)
        norm = Standardizer(X[fit])
        W, b = fit_ridge(norm(X[fit]), target[fit], alpha)
        pred = to_mm(norm(X[test]) @ W + b)
        err = {"mpjpe": mpjpe(pred, pose[test]) * ROOT_CORRECTION, "pmpjpe": pmpjpe(pred, pose[test])}
        fit_err = mpjpe(to_mm(norm(X[fit]) @ W + b), pose[fit]).mean() * ROOT_CORRECTION
        report["layers"][layer] = {
            "alpha": alpha, "val_mpjpe_by_alpha": {str(a): s * ROOT_CORRECTION for a, s in scores.items()},
            "fit_mpjpe": float(fit_err), "features": int(X.shape[1]),
            **{m: mean_interval(e[None], inst) for m, e in err.items()},
            "per_image": {m: np.round(e, 2).tolist() for m, e in err.items()}}
    return report


def mirror_probe(init: str, store, arch: str = "resnet18n", input_size: int | None = None, seed: int = 0,
                 every: int = 8, progress: bool = False) -> dict:
    """Can a linear classifier on the frozen features tell an image from its mirror? Trained on the
    training subjects (every `every`-th frame; each image once as it is, once mirrored), tested on
    the test subjects' images the same way. -> {layer: {accuracy, low, high, ...}}."""
    g = S.open_store(store)
    phi, arch, run_size = load_backbone(init, arch, seed)
    size = input_size or run_size or 64
    fit_rows, test_rows = S.rows(g, "train", every=every), S.rows(g, "test", every=every)
    rows = np.concatenate([fit_rows, fit_rows, test_rows, test_rows])
    mirrored = np.concatenate([np.zeros(len(fit_rows), bool), np.ones(len(fit_rows), bool),
                               np.zeros(len(test_rows), bool), np.ones(len(test_rows), bool)])
    feats = features(phi, store, rows, size, mirrored)
    label = np.where(mirrored, 1.0, -1.0)
    n = 2 * len(fit_rows)
    cols = {c: np.tile(g[c].get_orthogonal_selection((test_rows,)), 2) for c in ("subject", "sequence", "frame")}
    inst = instant_ids(cols["subject"], cols["sequence"], cols["frame"])
    names = list(g.attrs["subjects"])
    out = {"init": str(init), "arch": arch, "input_size": size, "fit_images": n, "test_images": 2 * len(test_rows),
           "test_subject": [names[i] for i in cols["subject"]], "test_sequence": cols["sequence"].tolist(),
           "test_frame": cols["frame"].tolist(), "test_mirrored": mirrored[n:].tolist(), "layers": {},
           "mirrors_rendered": True}  # probes made before this key showed the unmirrored image twice
    for layer in LAYERS:
        X = feats[layer].astype(np.float64)
        norm = Standardizer(X[:n])
        # the strength by 2-fold cross-validation over the training subjects' images
        half = g["subject"].get_orthogonal_selection((fit_rows,)) % 2 == 0
        a_idx, b_idx = np.flatnonzero(np.tile(half, 2)), np.flatnonzero(~np.tile(half, 2))
        score = lambda y: -np.mean(np.sign(y[:, 0]) == label[:n][b_idx])
        alpha, _ = choose_alpha(norm(X[:n])[a_idx], label[:n][a_idx, None], norm(X[:n])[b_idx], score)
        W, b = fit_ridge(norm(X[:n]), label[:n, None], alpha)
        test_score = (norm(X[n:]) @ W + b)[:, 0]
        hit = (np.sign(test_score) == label[n:]).astype(np.float64)
        m = len(test_rows)  # the test images come as originals, then their mirrors
        pair = np.where(test_score[m:] > test_score[:m], 1.0, np.where(test_score[m:] == test_score[:m], 0.5, 0.0))
        out["layers"][layer] = {"alpha": alpha, "accuracy": mean_interval(hit[None], inst), "hits": hit.astype(int).tolist(),
                                "pairwise": mean_interval(pair[None], inst[:m]), "pair_hits": pair.tolist(),
                                "fit_accuracy": float(np.mean(np.sign(norm(X[:n]) @ W + b)[:, 0] == label[:n]))}
    return out


def probe(init: str, store, out, protocols=("S1", "All"), val_subject: str = "S8", arch: str = "resnet18n",
          input_size: int | None = None, seed: int = 0, mirror: bool = True, progress: bool = True) -> dict:
    """Both probes of one backbone, written to out/probe.json and out/probe.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"pose": {p: pose_probe(init, store, p, val_subject, arch, input_size, seed, progress=progress)
                       for p in protocols}}
    if mirror:
        report["mirror"] = mirror_probe(init, store, arch, input_size, seed)
    tmp = out / "probe.json.tmp"
    tmp.write_text(json.dumps(report))
    tmp.replace(out / "probe.json")
    (out / "probe.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = ["| protocol | layer | alpha | MPJPE (95 % interval) | PMPJPE (95 % interval) | test images |",
             "|---|---|---:|---|---|---:|"]
    for protocol, r in report["pose"].items():
        for layer, m in r["layers"].items():
            lines.append(f"| {protocol} | {layer} | {m['alpha']:g} | {format_interval(m['mpjpe'])} | "
                         f"{format_interval(m['pmpjpe'])} | "
                         f"{r['test_images']} |")
    first = next(iter(report["pose"].values()))
    head = [f"# Probe of `{first['init']}`", "", f"Ridge from frozen pooled features ({first['arch']}, "
            f"{first['input_size']} px, background removed) to the standardized pose; strength chosen on "
            f"{first['val_subject']}; test every {first['test_every']}th frame of the test subjects, all cameras; "
            "intervals: bootstrap over test instants.", ""]
    if "mirror" in report:
        lines += ["", "| mirror probe | accuracy, each image (95 % interval) | each pair: mirror scored above "
                  "(95 % interval) | training accuracy |", "|---|---|---|---:|"]
        for layer, m in report["mirror"]["layers"].items():
            a, pw = m["accuracy"], m["pairwise"]
            lines.append(f"| {layer} | {a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | {pw['mean']:.3f} "
                         f"[{pw['low']:.3f}, {pw['high']:.3f}] | {m['fit_accuracy']:.3f} |")
    return "\n".join(head + lines) + "\n"
