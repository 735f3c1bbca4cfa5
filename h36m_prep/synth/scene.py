"""The static room of a capture session: floor, walls, ceiling, furniture and posters.

Sizes mm, world frame (Z up). Different subjects were recorded in slightly different sessions:
furniture moves a little and colours drift.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..geometry import Camera, pixel_rays
from .render import render_room


@dataclasses.dataclass(frozen=True)
class Room:
    """Arrays in the layout render_room expects."""

    room: np.ndarray      # half x, half y, ceiling, tile size
    wall_rgb: np.ndarray  # [5, 3]: walls +x, -x, +y, -y, ceiling
    floor_rgb: np.ndarray  # [2, 3]
    boxes: np.ndarray     # [B, 9]: lo xyz, hi xyz, rgb
    posters: np.ndarray   # [P, 8]: wall id, u0, u1, z0, z1, rgb


_WALLS = np.array([[190, 180, 160], [150, 165, 180], [175, 160, 150], [160, 175, 150], [200, 200, 195]], float)
_FLOOR = np.array([[120, 110, 100], [95, 90, 85]], float)


def session_room(rng: np.random.Generator) -> Room:
    """One session's room; the capture area |x|, |y| < 1.7 m stays free."""
    half_x, half_y = 4200.0, 6800.0
    jitter = lambda a: np.clip(a + rng.uniform(-10, 10, a.shape), 0, 255)  # noqa: E731
    boxes = []
    for k in range(6):
        w, d, h = rng.uniform(400, 1100), rng.uniform(350, 800), rng.uniform(500, 1800)
        if k % 2 == 0:  # along a long wall (x = +-half_x)
            sx = 1 if k % 4 == 0 else -1
            cx, cy = sx * (half_x - d / 2 - rng.uniform(0, 300)), rng.uniform(-4500, 4500)
            lo, hi = (cx - d / 2, cy - w / 2, 0.0), (cx + d / 2, cy + w / 2, h)
        else:  # along a short wall (y = +-half_y)
            sy = 1 if k % 4 == 1 else -1
            cx, cy = rng.uniform(-3000, 3000), sy * (half_y - d / 2 - rng.uniform(0, 400))
            lo, hi = (cx - w / 2, cy - d / 2, 0.0), (cx + w / 2, cy + d / 2, h)
        boxes.append([*lo, *hi, *rng.uniform(40, 230, 3)])
    posters = []
    for wall in range(4):
        span = half_y if wall < 2 else half_x
        for _ in range(3):
            u0 = rng.uniform(-span + 300, span - 1500)
            z0 = rng.uniform(900, 1800)
            posters.append([wall, u0, u0 + rng.uniform(500, 1400), z0, z0 + rng.uniform(400, 900),
                            *rng.uniform(30, 240, 3)])
    return Room(np.array([half_x, half_y, 3400.0, 600.0]), jitter(_WALLS), jitter(_FLOOR),
                np.array(boxes), np.array(posters))


def camera_rays(cam: Camera) -> np.ndarray:
    """[H, W, 3] unit rays (camera frame) through every pixel centre of the real camera."""
    jj, ii = np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height, dtype=np.float64))
    return pixel_rays(np.stack([jj, ii], -1), cam)


def room_image(room: Room, cam: Camera, rays: np.ndarray | None = None) -> np.ndarray:
    """The empty room as `cam` sees it, before noise and lighting: [H, W, 3] float32 RGB 0..255."""
    rays = camera_rays(cam) if rays is None else rays
    world = np.ascontiguousarray(rays @ cam.R.T)
    return render_room(world, cam.C, room.room, room.wall_rgb, room.floor_rgb, room.boxes, room.posters)
