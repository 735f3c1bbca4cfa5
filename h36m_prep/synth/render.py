"""Ray-casting kernels (numba) for the synthetic dataset: a textured room and a body of
capsules and ellipsoids, seen through per-pixel rays of the real (distorted) camera model.

Kernels take arrays and return arrays; geometry comes in already in the frame they use.
Colours are float RGB in 0..255.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _hash(x: float, y: float, z: float) -> float:
    v = math.sin(x * 12.9898 + y * 78.233 + z * 37.719) * 43758.5453
    return v - math.floor(v)


@njit(cache=True)
def _value_noise(x: float, y: float, scale: float) -> float:
    """Smooth noise in [0, 1) of a 2D coordinate at a feature size of `scale` mm."""
    gx, gy = x / scale, y / scale
    ix, iy = math.floor(gx), math.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(ix, iy, 0.0), _hash(ix + 1, iy, 0.0)
    c, d = _hash(ix, iy + 1, 0.0), _hash(ix + 1, iy + 1, 0.0)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


@njit(cache=True)
def render_room(rays: np.ndarray, origin: np.ndarray, room: np.ndarray, wall_rgb: np.ndarray,
                floor_rgb: np.ndarray, boxes: np.ndarray, posters: np.ndarray) -> np.ndarray:
    """The empty room through every pixel ray. -> [H, W, 3] float32.

    rays: [H, W, 3] unit directions, world frame; origin: camera centre (mm).
    room: (half size x, half size y, ceiling height, tile size); walls are x = +-room[0],
    y = +-room[1] (ids 0..3: +x, -x, +y, -y), ceiling id 4. wall_rgb: [5, 3].
    floor_rgb: [2, 3] tile colours. boxes: [B, 9] (lo xyz, hi xyz, rgb).
    posters: [P, 8] (wall id, u0, u1, z0, z1, rgb) where u is the wall's horizontal coordinate.
    """
    H, W = rays.shape[0], rays.shape[1]
    out = np.empty((H, W, 3), dtype=np.float32)
    for i in range(H):
        for j in range(W):
            dx, dy, dz = rays[i, j, 0], rays[i, j, 1], rays[i, j, 2]
            best = 1e18
            kind = -1
            # planes: floor (z = 0), ceiling, four walls
            if dz < -1e-9:
                t = -origin[2] / dz
                if t < best:
                    best, kind = t, 10
            if dz > 1e-9:
                t = (room[2] - origin[2]) / dz
                if t < best:
                    best, kind = t, 4
            if dx > 1e-9:
                t = (room[0] - origin[0]) / dx
                if t < best:
                    best, kind = t, 0
            if dx < -1e-9:
                t = (-room[0] - origin[0]) / dx
                if t < best:
                    best, kind = t, 1
            if dy > 1e-9:
                t = (room[1] - origin[1]) / dy
                if t < best:
                    best, kind = t, 2
            if dy < -1e-9:
                t = (-room[1] - origin[1]) / dy
                if t < best:
                    best, kind = t, 3
            # boxes (slab test); face normal axis kept for shading
            box_hit, box_axis = -1, 0
            for b in range(boxes.shape[0]):
                tmin, tmax, axis = -1e18, 1e18, 0
                for a in range(3):
                    d = rays[i, j, a]
                    lo, hi = boxes[b, a], boxes[b, 3 + a]
                    if abs(d) < 1e-12:
                        if origin[a] < lo or origin[a] > hi:
                            tmin = 1e18
                        continue
                    t0, t1 = (lo - origin[a]) / d, (hi - origin[a]) / d
                    if t0 > t1:
                        t0, t1 = t1, t0
                    if t0 > tmin:
                        tmin, axis = t0, a
                    tmax = min(tmax, t1)
                if tmin <= tmax and 0 < tmin < best:
                    best, box_hit, box_axis = tmin, b, axis
            px, py, pz = origin[0] + best * dx, origin[1] + best * dy, origin[2] + best * dz
            if box_hit >= 0:
                shade = 0.95 if box_axis == 2 else (0.72 if box_axis == 0 else 0.82)
                grain = 0.92 + 0.08 * _value_noise(px + py, pz, 60.0)
                for c in range(3):
                    out[i, j, c] = boxes[box_hit, 6 + c] * shade * grain
            elif kind == 10:
                ts = room[3]
                cx, cy = math.floor(px / ts), math.floor(py / ts)
                tile = int(cx + cy) & 1
                gx, gy = px / ts - cx, py / ts - cy
                grout = 0.6 if (gx < 0.02 or gy < 0.02) else 1.0
                var = 0.85 + 0.15 * _value_noise(px, py, 180.0)
                for c in range(3):
                    out[i, j, c] = floor_rgb[tile, c] * grout * var
            else:
                u = py if kind < 2 else px  # horizontal coordinate along the wall
                rgb0, rgb1, rgb2 = wall_rgb[kind, 0], wall_rgb[kind, 1], wall_rgb[kind, 2]
                for p in range(posters.shape[0]):
                    if posters[p, 0] == kind and posters[p, 1] <= u <= posters[p, 2] \
                            and posters[p, 3] <= pz <= posters[p, 4]:
                        rgb0, rgb1, rgb2 = posters[p, 5], posters[p, 6], posters[p, 7]
                panel = 0.7 if (kind < 4 and (u % 1000.0 < 25.0 or pz < 150.0)) else 1.0
                var = 0.88 + 0.12 * _value_noise(u, pz, 250.0)
                shade = 0.8 if kind < 4 else 0.65
                out[i, j, 0] = rgb0 * panel * var * shade
                out[i, j, 1] = rgb1 * panel * var * shade
                out[i, j, 2] = rgb2 * panel * var * shade
    return out


@njit(cache=True)
def _capsule_t(dx, dy, dz, ax, ay, az, bx, by, bz, r):
    """Nearest t > 0 where the ray t*d from the origin enters the capsule, or -1."""
    bax, bay, baz = bx - ax, by - ay, bz - az
    oax, oay, oaz = -ax, -ay, -az
    baba = bax * bax + bay * bay + baz * baz
    bard = bax * dx + bay * dy + baz * dz
    baoa = bax * oax + bay * oay + baz * oaz
    rdoa = dx * oax + dy * oay + dz * oaz
    oaoa = oax * oax + oay * oay + oaz * oaz
    a = baba - bard * bard
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa * baoa - r * r * baba
    h = b * b - a * c
    if h >= 0.0 and a > 1e-12:
        t = (-b - math.sqrt(h)) / a
        y = baoa + t * bard
        if 0.0 < y < baba and t > 0:
            return t
    # caps: the sphere at whichever end the ray meets the infinite cylinder beyond
    best = -1.0
    for e in range(2):
        cx, cy, cz = (ax, ay, az) if e == 0 else (bx, by, bz)
        bb = -(dx * cx + dy * cy + dz * cz)
        cc = cx * cx + cy * cy + cz * cz - r * r
        hh = bb * bb - cc
        if hh > 0:
            t = -bb - math.sqrt(hh)
            if t > 0 and (best < 0 or t < best):
                best = t
    return best


@njit(cache=True)
def render_body(rays: np.ndarray, box: np.ndarray, caps: np.ndarray, cap_rgb: np.ndarray,
                ells: np.ndarray, ell_rgb: np.ndarray, up: np.ndarray,
                rgb: np.ndarray, depth: np.ndarray) -> None:
    """Ray-cast the body into `rgb` [H, W, 3] float32 and `depth` [H, W] (mm along the ray,
    inf where empty) inside box (i0, i1, j0, j1). Camera frame, rays from the origin.

    caps: [C, 7] (a xyz, b xyz, radius) with colours cap_rgb [C, 3].
    ells: [E, 16] (centre xyz, M row-major 3x3 with |M (x - centre)| = 1 on the surface,
    second-colour axis xyz, threshold); ell_rgb: [E, 6], the second colour where the unit normal
    has a component above the threshold along the axis (hair on a head).
    up: the world's up direction in the camera frame (overhead light).
    """
    for i in range(box[0], box[1]):
        for j in range(box[2], box[3]):
            dx, dy, dz = rays[i, j, 0], rays[i, j, 1], rays[i, j, 2]
            best, hit, kind = 1e18, -1, 0
            for k in range(caps.shape[0]):
                t = _capsule_t(dx, dy, dz, caps[k, 0], caps[k, 1], caps[k, 2],
                               caps[k, 3], caps[k, 4], caps[k, 5], caps[k, 6])
                if 0 < t < best:
                    best, hit, kind = t, k, 0
            for k in range(ells.shape[0]):
                # q(t) = M (t d - c) = t a - b;  |q|^2 = 1
                a0 = ells[k, 3] * dx + ells[k, 4] * dy + ells[k, 5] * dz
                a1 = ells[k, 6] * dx + ells[k, 7] * dy + ells[k, 8] * dz
                a2 = ells[k, 9] * dx + ells[k, 10] * dy + ells[k, 11] * dz
                b0 = ells[k, 3] * ells[k, 0] + ells[k, 4] * ells[k, 1] + ells[k, 5] * ells[k, 2]
                b1 = ells[k, 6] * ells[k, 0] + ells[k, 7] * ells[k, 1] + ells[k, 8] * ells[k, 2]
                b2 = ells[k, 9] * ells[k, 0] + ells[k, 10] * ells[k, 1] + ells[k, 11] * ells[k, 2]
                aa = a0 * a0 + a1 * a1 + a2 * a2
                ab = a0 * b0 + a1 * b1 + a2 * b2
                bb = b0 * b0 + b1 * b1 + b2 * b2 - 1.0
                h = ab * ab - aa * bb
                if h > 0:
                    t = (ab - math.sqrt(h)) / aa
                    if 0 < t < best:
                        best, hit, kind = t, k, 1
            if hit < 0:
                continue
            px, py, pz = best * dx, best * dy, best * dz
            second = False
            if kind == 0:
                ax, ay, az = caps[hit, 0], caps[hit, 1], caps[hit, 2]
                bax, bay, baz = caps[hit, 3] - ax, caps[hit, 4] - ay, caps[hit, 5] - az
                s = ((px - ax) * bax + (py - ay) * bay + (pz - az) * baz) / max(
                    bax * bax + bay * bay + baz * baz, 1e-12)
                s = min(max(s, 0.0), 1.0)
                nx, ny, nz = px - ax - s * bax, py - ay - s * bay, pz - az - s * baz
            else:
                q0 = ells[hit, 3] * (px - ells[hit, 0]) + ells[hit, 4] * (py - ells[hit, 1]) + ells[hit, 5] * (pz - ells[hit, 2])
                q1 = ells[hit, 6] * (px - ells[hit, 0]) + ells[hit, 7] * (py - ells[hit, 1]) + ells[hit, 8] * (pz - ells[hit, 2])
                q2 = ells[hit, 9] * (px - ells[hit, 0]) + ells[hit, 10] * (py - ells[hit, 1]) + ells[hit, 11] * (pz - ells[hit, 2])
                nx = ells[hit, 3] * q0 + ells[hit, 6] * q1 + ells[hit, 9] * q2
                ny = ells[hit, 4] * q0 + ells[hit, 7] * q1 + ells[hit, 10] * q2
                nz = ells[hit, 5] * q0 + ells[hit, 8] * q1 + ells[hit, 11] * q2
            norm = math.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
            nx, ny, nz = nx / norm, ny / norm, nz / norm
            if kind == 1:
                second = nx * ells[hit, 12] + ny * ells[hit, 13] + nz * ells[hit, 14] > ells[hit, 15]
            # overhead light plus a light at the camera: both symmetric under a horizontal mirror
            shade = 0.3 + 0.4 * max(0.0, nx * up[0] + ny * up[1] + nz * up[2]) \
                + 0.4 * max(0.0, -(nx * dx + ny * dy + nz * dz))
            for c in range(3):
                col = cap_rgb[hit, c] if kind == 0 else (ell_rgb[hit, 3 + c] if second else ell_rgb[hit, c])
                rgb[i, j, c] = col * shade
            depth[i, j] = best


@njit(cache=True)
def compose(background: np.ndarray, body: np.ndarray, depth: np.ndarray, gain: float,
            noise_sigma: float, seed: np.uint64) -> np.ndarray:
    """One video frame: body over background, global gain (lighting), Gaussian-like sensor
    noise from a counter-based generator keyed by `seed`. -> [H, W, 3] uint8."""
    H, W = background.shape[0], background.shape[1]
    out = np.empty((H, W, 3), dtype=np.uint8)
    state = seed | np.uint64(1)
    for i in range(H):
        for j in range(W):
            fg = depth[i, j] < 1e17
            for c in range(3):
                # xorshift64*: one draw gives four 16-bit uniforms whose sum approximates a
                # Gaussian (mean 2, variance 1/3)
                state ^= state >> np.uint64(12)
                state ^= state << np.uint64(25)
                state ^= state >> np.uint64(27)
                r = state * np.uint64(2685821657736338717)
                acc = 0.0
                for _ in range(4):
                    acc += float(r & np.uint64(0xFFFF)) / 65536.0
                    r >>= np.uint64(16)
                n = (acc - 2.0) * 1.7320508 * noise_sigma
                v = (body[i, j, c] if fg else background[i, j, c]) * gain + n
                out[i, j, c] = np.uint8(min(255.0, max(0.0, v + 0.5)))
    return out
