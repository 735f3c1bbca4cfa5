"""Pair loading for multi-view synchronization learning: frame index, numba sampler, DALI
pipeline (and a torch reference backend), loaders.

The loaders need torch; they are imported on first use, so that importing the sampler's
config (as the CLI does at start-up) does not load torch.
"""
from .index import FrameIndex, load_index
from .sampler import KEPT, REMOVED, SUBSTITUTED, PairSampler, Plan, SamplerConfig

__all__ = ["FrameIndex", "load_index", "PairLoader", "PoseLoader", "pose_stats", "unstandardize", "normalize",
           "PairSampler", "Plan", "SamplerConfig", "KEPT", "REMOVED", "SUBSTITUTED"]


def __getattr__(name: str):
    if name == "PairLoader":
        from .loader import PairLoader
        return PairLoader
    if name in ("PoseLoader", "pose_stats", "unstandardize"):
        from . import pose
        return getattr(pose, name)
    if name == "normalize":
        from .render import normalize
        return normalize
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
