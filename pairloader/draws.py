"""The draws every sampler shares: a counter-based random generator (splitmix64: `key` names a
stream by (seed, purpose, position), `uniform` draws from it), a keyed permutation (the order of
an epoch), and `view_affine`: an output image onto its store crop. All are numba functions of
plain numbers, so a plan is a pure function of its arguments, whatever the thread or process.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True)
def mix(x):
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def key(a, b, c):
    return mix(mix(mix(np.uint64(a)) ^ np.uint64(b)) ^ np.uint64(c))


@njit(cache=True)
def uniform(state):
    """-> (uniform in [0, 1), next state)."""
    state = mix(state)
    return float(state >> np.uint64(11)) * (1.0 / 9007199254740992.0), state


@njit(cache=True)
def permute(p, n, key):
    """A keyed bijection of [0, n): 4-round Feistel network with cycle walking."""
    bits = 2
    while (np.uint64(1) << np.uint64(bits)) < np.uint64(n):
        bits += 2
    half = np.uint64(bits // 2)
    mask = (np.uint64(1) << half) - np.uint64(1)
    x = np.uint64(p)
    while True:
        left, right = x >> half, x & mask
        for r in range(4):
            left, right = right, left ^ (mix(right ^ mix(key + np.uint64(r))) & mask)
        x = (left << half) | right
        if x < np.uint64(n):
            return np.int64(x)


@njit(cache=True)
def view_affine(out, u_scale, u_shift_x, u_shift_y, u_rot, mirror, crop, out_size, win_lo, win_hi, shift, rot_deg):
    """Output pixel -> store-crop pixel for a window of side crop * (win_lo..win_hi) centred
    within shift * crop of the crop centre, turned by up to rot_deg, mirrored if asked."""
    w = crop * (win_lo + (win_hi - win_lo) * u_scale)
    k = w / out_size
    cx = (crop - 1) / 2.0 + shift * crop * (2 * u_shift_x - 1)
    cy = (crop - 1) / 2.0 + shift * crop * (2 * u_shift_y - 1)
    th = math.radians(rot_deg * (2 * u_rot - 1))
    c, s = math.cos(th), math.sin(th)
    sgn = -1.0 if mirror else 1.0
    co = (out_size - 1) / 2.0
    a, b = c * sgn * k, -s * k
    cc, d = s * sgn * k, c * k
    out[0, 0], out[0, 1], out[0, 2] = a, b, cx - a * co - b * co
    out[1, 0], out[1, 1], out[1, 2] = cc, d, cy - cc * co - d * co
