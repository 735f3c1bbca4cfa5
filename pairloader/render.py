"""The CPU backends: every image of a plan, composited, warped and normalized into a batch.

Two backends of the same function as the DALI pipeline:
  'opencv'  the fast path, on uint8 until the last step: a JPEG crop decoded at the smallest
            size the output resolves (libjpeg's DCT scaling: 1/2 of the side for 64 px outputs of
            256 px crops), composite by the 0/1 weight (cv2.copyTo), one bilinear cv2.warpAffine
            (zeros outside), or where the affine only scales and mirrors a window on whole pixels
            (the paper's centred 224 of 256) only that window composited, then copied or
            cv2.resize'd, the same samples; a uint8 batch is channels-last in memory and each
            image is written straight into it (the composite itself, for an unmirrored window
            at scale 1); a float batch gets one numba pass that normalizes through a
            per-channel lookup table while turning HWC into CHW;
  'torch'   the reference (`reference.compose`), float32 throughout.
They differ only by OpenCV's fixed-point interpolation weights (1/32 px) and the rounding of the
warp to uint8. Every step releases the GIL (file reads, Blosc, OpenCV, the numba pass), so the
loaders render batches in threads of the consuming process and hand them over without a copy.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from numba import njit

from .fetch import MEAN, STD, StoreReader, fetch_image, reduced_affine, reduction
from .reference import compose
from .sampler import KEPT

# (v - mean) / std for every uint8 v, computed as the reference computes it (float32)
_LUT = ((torch.arange(256, dtype=torch.float32)[None] - torch.as_tensor(MEAN, dtype=torch.float32)[:, None])
        / torch.as_tensor(STD, dtype=torch.float32)[:, None]).numpy()  # [3, 256]


@njit(cache=True, nogil=True)
def normalize_into(image, lut, out):
    """uint8 [O, O, 3] -> out float32 [3, O, O]: out[c, y, x] = lut[c, image[y, x, c]]."""
    h, w, channels = image.shape
    for c in range(channels):
        for y in range(h):
            for x in range(w):
                out[c, y, x] = lut[c, image[y, x, c]]


def normalize(x: torch.Tensor) -> torch.Tensor:
    """A uint8 batch [..., 3, O, O] (on any device, after the transfer) -> float32 normalized as the
    float path normalizes (the same float32 operations as its lookup table), in the float path's
    contiguous layout (so a model computes exactly as on float batches); a float batch as is."""
    if x.dtype != torch.uint8:
        return x
    mean = torch.as_tensor(MEAN, dtype=torch.float32, device=x.device)[:, None, None]
    std = torch.as_tensor(STD, dtype=torch.float32, device=x.device)[:, None, None]
    return ((x.float() - mean) / std).contiguous()


def composite_opencv(image: np.ndarray, weight: np.ndarray, behind: np.ndarray, bg_mode: int) -> np.ndarray:
    """uint8 [S, S, 3]: the image where weight is 1, behind where it is 0."""
    if bg_mode == KEPT:
        return image
    out = np.array(behind)  # behind may be shared (the background bank, the mean fill)
    cv2.copyTo(image, weight, out)
    return out


def warp_opencv(comp: np.ndarray, affine: np.ndarray, out_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [S, S, 3] -> uint8 [O, O, 3] (into `out`, contiguous [O, O, 3], when given); affine
    [2, 3]: output pixel -> crop pixel. A window that the affine only scales (and mirrors), on
    whole pixels inside the crop, is copied or resized instead (the paper's centred window: the
    same samples, 4-10x faster than the general warp)."""
    window = axis_aligned_window(affine, out_size, comp.shape[1], comp.shape[0])
    if window is not None:
        return _window_into(comp, window, out_size, out)
    return _warp_into(comp, affine, out_size, out)


def _warp_into(comp: np.ndarray, affine: np.ndarray, out_size: int, out: np.ndarray | None) -> np.ndarray:
    warped = cv2.warpAffine(comp, np.asarray(affine, np.float64), (out_size, out_size), dst=out,
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    if out is not None and warped is not out:  # OpenCV made a new array: never for a contiguous uint8 `out`
        out[...] = warped
    return warped


def axis_aligned_window(affine: np.ndarray, out_size: int, width: int, height: int) -> tuple | None:
    """(x0, y0, w, h, mirrored) when `affine` (output pixel -> crop pixel, centres at integers)
    samples exactly as resizing the crop's window [y0, y0 + h) x [x0, x0 + w) to out_size (and
    mirroring it) does: no rotation or shear, the window on whole pixels and inside the crop;
    None otherwise. Remembered per affine (a batch without jitter has two: mirrored or not)."""
    a = np.asarray(affine, np.float64)
    key = (a.tobytes(), out_size, width, height)
    window = _WINDOWS.get(key, False)
    if window is False:
        if len(_WINDOWS) > 4096:  # jittered plans: every affine new, nothing worth keeping
            _WINDOWS.clear()
        window = _WINDOWS[key] = _window_of(a, out_size, width, height)
    return window


_WINDOWS: dict[tuple, tuple | None] = {}


def _window_of(a: np.ndarray, out_size: int, width: int, height: int) -> tuple | None:
    if a[0, 1] != 0 or a[1, 0] != 0 or a[0, 0] == 0 or a[1, 1] <= 0:
        return None
    sx, sy = abs(a[0, 0]), a[1, 1]
    bx = a[0, 2] if a[0, 0] > 0 else a[0, 2] + a[0, 0] * (out_size - 1)  # the unmirrored window's
    x0, y0 = bx - 0.5 * sx + 0.5, a[1, 2] - 0.5 * sy + 0.5  # resizing maps pixel i to (i + 0.5) * s - 0.5
    w, h = out_size * sx, out_size * sy
    whole = [round(v) for v in (x0, y0, w, h)]
    if any(abs(v - r) > 1e-6 for v, r in zip((x0, y0, w, h), whole)):
        return None
    x0, y0, w, h = whole
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height or w < 1 or h < 1:
        return None
    return x0, y0, w, h, bool(a[0, 0] < 0)


def _window_into(comp: np.ndarray, window: tuple, out_size: int, out: np.ndarray | None) -> np.ndarray:
    x0, y0, w, h, mirrored = window
    roi = comp[y0:y0 + h, x0:x0 + w]
    if out is None:
        out = np.empty((out_size, out_size, comp.shape[2]), np.uint8)
    if (w, h) != (out_size, out_size):
        roi = cv2.resize(roi, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    if mirrored:
        cv2.flip(roi, 1, dst=out)
    else:
        np.copyto(out, roi)
    return out


def render_image(image: np.ndarray, weight: np.ndarray, behind: np.ndarray, bg_mode: int, affine: np.ndarray,
                 out_size: int, out: np.ndarray | None = None) -> np.ndarray:
    """composite_opencv then warp_opencv, into `out` (uint8 [O, O, 3], contiguous) when given, with
    the same result: where the affine samples a whole-pixel window, only the window is composited
    (a window resized or copied samples nothing outside itself)."""
    window = axis_aligned_window(affine, out_size, image.shape[1], image.shape[0])
    if window is None:
        return _warp_into(composite_opencv(image, weight, behind, bg_mode), affine, out_size, out)
    x0, y0, w, h, mirrored = window
    rows, cols = slice(y0, y0 + h), slice(x0, x0 + w)
    if bg_mode == KEPT:
        comp = image[rows, cols]
    else:
        direct = out is not None and (w, h) == (out_size, out_size) and not mirrored
        comp = out if direct else np.empty((h, w, image.shape[2]), np.uint8)
        np.copyto(comp, behind[rows, cols])
        cv2.copyTo(image[rows, cols], weight[rows, cols], comp)
        if direct:
            return out
    return _window_into(comp, (0, 0, w, h, mirrored), out_size, out)


def render_into(reader: StoreReader, plan, out_size: int, backend: str, out, same_as=None,
                mirrored=None, arrays=None) -> None:
    """Every image of `plan` (plan.images() order) into out[k], a float32 [3, O, O] tensor (or,
    with the OpenCV backend, a uint8 one in channels-last memory, `_batch`: the warped pixels,
    normalized later by `normalize`).
    same_as, mirrored [n] (optional): image k with same_as[k] = j >= 0 is image j, mirrored
    where their `mirrored` differ (the output mirror is exactly the mirror in the affine), and
    is copied instead of rendered. arrays (optional, OpenCV backend): out[k]'s memory as numpy,
    [O, O, 3] for uint8, [3, O, O] for float32 (render_pairs takes them from the batch once);
    made from `out` when not given."""
    rows, bg_mode, bg_index, bg_flip, affine = plan.images()
    quality = plan.qualities() if hasattr(plan, "qualities") else np.zeros(len(rows), np.int16)
    if backend == "opencv" and arrays is None:
        arrays = [o.permute(1, 2, 0).numpy() if o.dtype == torch.uint8 else o.numpy() for o in out]
    for k in range(len(rows)):
        j = -1 if same_as is None else same_as[k]
        if j >= 0:
            if backend != "opencv":
                out[k].copy_(out[j].flip(-1) if mirrored[k] != mirrored[j] else out[j])
            elif mirrored[k] == mirrored[j]:
                np.copyto(arrays[k], arrays[j])
            elif arrays[k].dtype == np.uint8:
                cv2.flip(arrays[j], 1, dst=arrays[k])
            else:
                np.copyto(arrays[k], arrays[j][..., ::-1])
            continue
        if backend == "opencv":  # a JPEG crop decodes at the smallest size the output still resolves
            reduce = reduction(affine[k], reader)
            image, weight, behind = fetch_image(reader, rows[k], bg_mode[k], bg_index[k], bg_flip[k], reduce,
                                                quality[k])
            a = reduced_affine(affine[k], reduce)
            if arrays[k].dtype == np.uint8:  # channels-last: rendered straight into the batch
                render_image(image, weight, behind, bg_mode[k], a, out_size, arrays[k])
            else:
                normalize_into(render_image(image, weight, behind, bg_mode[k], a, out_size), _LUT, arrays[k])
        else:
            image, weight, behind = fetch_image(reader, rows[k], bg_mode[k], bg_index[k], bg_flip[k], 1, quality[k])
            out[k].copy_(compose(image, weight, behind, affine[k], out_size))


def _dtype(backend: str, uint8: bool) -> torch.dtype:
    if uint8 and backend != "opencv":
        raise ValueError(f"uint8 batches come from the OpenCV backend, not {backend!r}")
    return torch.uint8 if uint8 else torch.float32


def _batch(shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """An empty batch [..., 3, O, O]; uint8 in channels-last memory ([..., O, O, 3] underneath, as
    the GPU's convolutions prefer it), so each image is warped straight into it."""
    if dtype != torch.uint8:
        return torch.empty(shape, dtype=dtype)
    *lead, c, h, w = shape
    return torch.empty((*lead, h, w, c), dtype=dtype).movedim(-1, -3)


def render_cpu(reader: StoreReader, plan, out_size: int, backend: str = "torch", uint8: bool = False) -> torch.Tensor:
    """Every image of a plan: float32 (or uint8) [n, 3, O, O] in plan.images() order."""
    out = _batch((len(plan.images()[0]), 3, out_size, out_size), _dtype(backend, uint8))
    render_into(reader, plan, out_size, backend, out)
    return out


def render_pairs(reader: StoreReader, plan, out_size: int, backend: str = "torch", uint8: bool = False) -> torch.Tensor:
    """The images of a pair plan as [2, P, 3, O, O]: [0] every pair's x1, [1] its x2, each
    contiguous. The OpenCV backend renders an image shared by several pairs once (plan.same_as);
    the torch reference renders every image from its own affine."""
    n_pairs = len(plan.rows)
    out = _batch((2, n_pairs, 3, out_size, out_size), _dtype(backend, uint8))
    views = [out[k % 2, k // 2] for k in range(2 * n_pairs)]
    if backend == "opencv":
        memory = (out.permute(0, 1, 3, 4, 2) if uint8 else out).numpy()  # the batch's memory, once
        render_into(reader, plan, out_size, backend, views, plan.same_as.reshape(-1),
                    plan.mirrored.reshape(-1), [memory[k % 2, k // 2] for k in range(2 * n_pairs)])
    else:
        render_into(reader, plan, out_size, backend, views)
    return out
