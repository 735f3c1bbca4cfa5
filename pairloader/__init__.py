"""Pair loading for multi-view synchronization learning: frame index, numba sampler, DALI
pipeline (and a torch reference backend), loaders."""
from .index import FrameIndex, load_index
from .loader import PairLoader
from .pose import PoseLoader, pose_stats, unstandardize
from .sampler import KEPT, REMOVED, SUBSTITUTED, PairSampler, Plan, SamplerConfig

__all__ = ["FrameIndex", "load_index", "PairLoader", "PoseLoader", "pose_stats", "unstandardize",
           "PairSampler", "Plan", "SamplerConfig", "KEPT", "REMOVED", "SUBSTITUTED"]
