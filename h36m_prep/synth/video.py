"""Writing the synthetic videos: MPEG-4 part 2 in mp4, with each camera's keyframes where we put them.

A video encoder puts a keyframe (an intra-coded frame) every `gop` frames and codes the frames in
between from the last one, so a frame's compression artefacts depend on its distance to the last
keyframe: its *phase*. Cameras that all start encoding at frame 0 of a take share that phase at
every instant, and so do synchronized frames of any two of them: a cue that tells synchronized
pairs apart without looking at the person. Real cameras started by hand each begin at their own
moment, so their phases differ; `keyframe_phases` draws one per camera (distinct within a take),
and `write_mp4` places the keyframes at phase + k * gop (and at frame 0, where every stream starts).
"""
from __future__ import annotations

import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np

GOP = 12  # the keyframe interval of OpenCV's and FFmpeg's MPEG-4 writer


def keyframe_phases(seed: int, take: str, cameras, gop: int = GOP, aligned: bool = False) -> dict[str, int]:
    """{camera: phase in [0, gop)}: distinct phases (as far as gop allows), drawn from (seed, take);
    aligned: every camera at phase 0 (all cameras started together)."""
    cameras = list(cameras)
    if aligned:
        return {c: 0 for c in cameras}
    rng = np.random.default_rng([zlib.crc32(str(p).encode()) for p in (seed, "keyframes", take)])
    order = rng.permutation(gop)
    return {c: int(order[i % gop]) for i, c in enumerate(cameras)}


def is_keyframe(t: int, phase: int, gop: int = GOP) -> bool:
    return t == 0 or (t - phase) % gop == 0


def write_mp4(path: str | Path, frames, fps: float, phase: int = 0, gop: int = GOP) -> int:
    """Encode RGB uint8 frames [H, W, 3] (an iterable) as MPEG-4 part 2 in `path`, keyframes at
    frame 0 and at phase + k * gop, at about one bit a pixel (OpenCV's `mp4v` rate). -> frames."""
    import av  # PyAV: FFmpeg's encoder with per-frame control of the picture type

    count = 0
    with av.open(str(path), "w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.codec_context.gop_size = 1 << 20  # keyframes only where forced below
                stream.codec_context.bit_rate = int(fps * w * h)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            if is_keyframe(count, phase, gop):
                vf.pict_type = av.video.frame.PictureType.I
            container.mux(stream.encode(vf))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count


def keyframe_indices(path: str | Path) -> list[int]:
    """The indices of a video's keyframes, read from its packets (nothing decoded)."""
    import av

    with av.open(str(path)) as container:
        return [i for i, p in enumerate(p for p in container.demux(video=0) if p.size) if p.is_keyframe]
