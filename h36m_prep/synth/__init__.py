"""The built-in synthetic datasets, one writer a layout: Human3.6M's (dataset.py) and a rig of
one's own (rig.py), rendered from real motion capture."""

WRITERS = ("h36m", "rig")  # the layouts


def writer(layout: str):
    """The synthetic writer of a layout: fn(raw, frames, scale, seed, workers, subjects, actions, keyframes).
    Each is imported when asked for (the renderer's imports are not needed to list the layouts)."""
    if layout == "h36m":
        from .dataset import synth_h36m
        return synth_h36m
    if layout == "rig":
        from .rig import synth_rig
        return synth_rig
    raise ValueError(f"unknown synthetic layout {layout!r}; choose one of {', '.join(WRITERS)}")
