"""Paired comparisons that decide: a bootstrap over seeds and test instants.

Two arms are compared on the same test images, seed by seed (the arms of a seed share that seed
in pretraining and fine-tuning). The per-image difference d[s, i] = error_B - error_A (positive
when A is better) varies with the seed s (training noise) and with the test image i; the images
of one instant (a subject, a sequence and a frame, seen by every camera) are not independent, so
the unit of test sampling is the instant, not the image.

`paired_bootstrap` resamples both at once, the two-way (crossed) bootstrap: each replicate draws
S seeds with replacement and G instants with replacement, and takes the mean difference over the
drawn seeds and the images of the drawn instants. The 95 % interval is the 2.5 and 97.5
percentiles of the replicates; the verdict is `better` when the interval lies above zero,
`worse` when below, and `no detectable difference` when it contains zero. With one seed the
interval covers test sampling only, and says so (`seeds: 1`). With few seeds a percentile
bootstrap is somewhat too narrow (the spread of S draws from S values is (S-1)/S of the
population's), so `t_over_seeds` also gives the Student-t interval of the per-seed mean
differences, which ignores test sampling but not the seeds' own spread; the verdict needs the
bootstrap interval to exclude zero.
"""
from __future__ import annotations

import numpy as np

VERDICTS = ("better", "no detectable difference", "worse")

# two-sided 97.5 % quantiles of Student's t, by degrees of freedom (1..30)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def verdict(low: float, high: float) -> str:
    """`better` (interval above 0), `worse` (below 0) or `no detectable difference`."""
    if low > 0:
        return VERDICTS[0]
    if high < 0:
        return VERDICTS[2]
    return VERDICTS[1]


def instant_ids(*keys) -> np.ndarray:
    """[N] int: one id per distinct combination of the key columns (subject, sequence, frame)."""
    cols = np.stack([np.asarray(k).astype(str) for k in keys], axis=1)
    _, ids = np.unique(cols, axis=0, return_inverse=True)
    return ids.reshape(-1)


def paired_bootstrap(diff, instants, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """diff [S, N]: per seed s and test image i, error of B minus error of A (positive: A better);
    instants [N]: the instant of each image. -> {mean, low, high, verdict, p, seeds, instants,
    images, t_over_seeds: {low, high}, per_seed}.

    The statistic is the mean over all S x N differences; the interval is the two-way bootstrap's
    percentile interval; p the two-sided bootstrap probability of the sign (twice the smaller
    share of replicates on either side of zero, at least 1 / n_boot)."""
    d = np.atleast_2d(np.asarray(diff, np.float64))
    inst = np.asarray(instants).reshape(-1)
    if d.shape[1] != len(inst):
        raise ValueError(f"diff has {d.shape[1]} images per seed, instants {len(inst)}")
    if not np.isfinite(d).all():
        raise ValueError("diff has NaN or inf entries")
    _, g = np.unique(inst, return_inverse=True)
    n_seeds, n_groups = d.shape[0], int(g.max()) + 1
    weight = np.bincount(g, minlength=n_groups).astype(np.float64)       # images per instant
    sums = np.stack([np.bincount(g, weights=row, minlength=n_groups) for row in d])  # [S, G]
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(np.float64)
    inst_counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot).astype(np.float64)
    num = ((seed_counts @ sums) * inst_counts).sum(axis=1)
    den = n_seeds * (inst_counts @ weight)
    reps = num / den
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha])
    mean = float(d.mean())
    p = max(2 * min((reps <= 0).mean(), (reps >= 0).mean()), 1 / n_boot)
    per_seed = d.mean(axis=1)
    if n_seeds > 1:
        half = _T975[min(n_seeds - 1, len(_T975)) - 1] * per_seed.std(ddof=1) / np.sqrt(n_seeds)
        t = {"low": float(per_seed.mean() - half), "high": float(per_seed.mean() + half)}
    else:
        t = None
    return {"mean": mean, "low": float(low), "high": float(high), "verdict": verdict(low, high),
            "p": float(min(p, 1.0)), "seeds": n_seeds, "instants": n_groups, "images": int(d.shape[1]),
            "level": level, "n_boot": n_boot, "t_over_seeds": t, "per_seed": per_seed.round(3).tolist()}


def format_interval(m: dict, digits: int = 1) -> str:
    """'mean [low, high]' of a result of paired_bootstrap or mean_interval."""
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def mean_interval(values, instants, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """The mean of values [S, N] (seeds x images) with the same two-way bootstrap interval:
    for one arm's error, or an accuracy (values 0/1). -> {mean, low, high, seeds, instants, images}."""
    out = paired_bootstrap(values, instants, n_boot, seed, level)
    return {k: out[k] for k in ("mean", "low", "high", "seeds", "instants", "images", "per_seed")}
