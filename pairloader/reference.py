"""The pure-torch reference backend: the pipeline's function, written with torch ops.

The tests check the DALI pipeline and the OpenCV backend against it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fetch import MEAN, STD


def compose(image: np.ndarray, weight: np.ndarray, behind: np.ndarray, affine: np.ndarray,
            out_size: int) -> torch.Tensor:
    """Composite, warp (bilinear, zeros outside), normalise: -> float32 [3, O, O].

    image, behind: uint8 [S, S, 3]; weight: uint8 [S, S, 1]; affine [2, 3]: output pixel ->
    store-crop pixel, pixel centres at integers.
    """
    img = torch.from_numpy(np.ascontiguousarray(image)).float()
    w = torch.from_numpy(np.ascontiguousarray(weight)).float()
    bg = torch.from_numpy(np.ascontiguousarray(behind)).float()
    comp = (img * w + bg * (1 - w)).permute(2, 0, 1)[None]  # [1, 3, S, S]
    S = image.shape[0]
    a = torch.as_tensor(affine, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(out_size, dtype=torch.float64),
                            torch.arange(out_size, dtype=torch.float64), indexing="ij")
    xs = a[0, 0] * xx + a[0, 1] * yy + a[0, 2]
    ys = a[1, 0] * xx + a[1, 1] * yy + a[1, 2]
    grid = torch.stack([xs * 2 / (S - 1) - 1, ys * 2 / (S - 1) - 1], -1)[None].float()
    out = F.grid_sample(comp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    mean = torch.as_tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(STD, dtype=torch.float32)[:, None, None]
    return (out - mean) / std
