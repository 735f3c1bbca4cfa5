"""A synthetic person: per-subject proportions and clothing, and the shaded primitives
(capsules per bone, ellipsoids for abdomen, chest and head) of one pose.

Left and right limbs share sizes and colours, so a mirrored image is told apart only by
3D pose, as the method needs.
"""
from __future__ import annotations

import colorsys
import dataclasses

import numpy as np

from .motion import subject_bones

_SKIN = np.array([[234, 192, 160], [205, 150, 115], [160, 110, 75], [110, 72, 50], [240, 205, 180]], float)
_HAIR = np.array([[30, 25, 20], [70, 45, 25], [150, 115, 60], [90, 90, 90], [20, 20, 25]], float)


@dataclasses.dataclass(frozen=True)
class Appearance:
    """bones: [16] mm (skeleton.BONES order); girth: limb thickness factor; colours RGB 0..255."""

    bones: np.ndarray
    girth: float
    shirt: np.ndarray
    trousers: np.ndarray
    skin: np.ndarray
    shoes: np.ndarray
    hair: np.ndarray
    long_sleeves: bool


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


def random_appearance(rng: np.random.Generator) -> Appearance:
    """One subject's body and clothes."""
    bones = subject_bones(rng)
    shirt_h = rng.uniform()
    return Appearance(
        bones=bones,
        girth=float(rng.uniform(0.88, 1.15)),
        shirt=_hsv(shirt_h, rng.uniform(0.45, 0.85), rng.uniform(0.55, 0.95)),
        trousers=_hsv((shirt_h + rng.uniform(0.25, 0.75)) % 1.0, rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.55)),
        skin=_SKIN[rng.integers(len(_SKIN))],
        shoes=_hsv(rng.uniform(), 0.2, rng.uniform(0.1, 0.3)),
        hair=_HAIR[rng.integers(len(_HAIR))],
        long_sleeves=bool(rng.uniform() < 0.5),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _ellipsoid(centre, up, side, radii, rgb, second_rgb=None, second_axis=None, thresh=2.0):
    """Ellipsoid row for render_body: axes (side, up, side x up) with radii (r_side, r_up, r_depth)."""
    up = _unit(up)
    side = _unit(side - np.dot(side, up) * up)
    depth = np.cross(side, up)
    M = np.stack([side / radii[0], up / radii[1], depth / radii[2]])
    axis = second_axis if second_axis is not None else up
    row = np.concatenate([centre, M.ravel(), axis, [thresh]])
    col = np.concatenate([rgb, second_rgb if second_rgb is not None else rgb])
    return row, col


def primitives(j: np.ndarray, app: Appearance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Body primitives of one pose. j: [32, 3] mm (raw joint layout), any frame; the primitives
    come out in that frame. -> caps [C, 7], cap_rgb [C, 3], ells [E, 16], ell_rgb [E, 6]."""
    g = app.girth
    forearm = app.shirt if app.long_sleeves else app.skin
    segs = [  # (joint a, joint b, radius mm, colour)
        (1, 2, 68 * g, app.trousers), (6, 7, 68 * g, app.trousers),
        (2, 3, 50 * g, app.trousers), (7, 8, 50 * g, app.trousers),
        (3, 5, 38 * g, app.shoes), (8, 10, 38 * g, app.shoes),
        (1, 6, 78 * g, app.trousers),
        (17, 18, 44 * g, app.shirt), (25, 26, 44 * g, app.shirt),
        (18, 19, 36 * g, forearm), (26, 27, 36 * g, forearm),
        (19, 23, 30 * g, app.skin), (27, 31, 30 * g, app.skin),
        (17, 25, 52 * g, app.shirt),
        (13, 14, 45 * g, app.skin),
    ]
    caps = np.array([[*j[a], *j[b], r] for a, b, r, _ in segs], dtype=np.float64)
    cap_rgb = np.array([c for *_, c in segs], dtype=np.float64)
    side = j[1] - j[6]  # left hip -> right hip
    head = float(np.linalg.norm(j[15] - j[14]))
    rows = [
        _ellipsoid(0.5 * (j[0] + j[12]), j[12] - j[0], side, (135 * g, 150.0, 100 * g), app.trousers),
        _ellipsoid(j[13] - 0.15 * (j[13] - j[12]), j[13] - j[12], j[25] - j[17],
                   (160 * g, 190.0, 110 * g), app.shirt),
        _ellipsoid(j[14] + 0.45 * (j[15] - j[14]), j[15] - j[14], side,
                   (0.5 * head, 0.6 * head, 0.53 * head), app.skin, app.hair, _unit(j[15] - j[14]), 0.45),
    ]
    ells = np.array([r for r, _ in rows])
    ell_rgb = np.array([c for _, c in rows])
    return caps, cap_rgb, ells, ell_rgb


def max_radius(app: Appearance) -> float:
    """A bound (mm) on how far the body surface reaches from the nearest joint (for boxes)."""
    return 220.0 * max(1.0, app.girth)
