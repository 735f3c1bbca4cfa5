"""The built-in synthetic datasets, one writer a layout: Human3.6M's (dataset.py) and a rig of
one's own (rig.py), rendered from real motion capture."""

WRITERS = {"h36m": ("dataset", "synth_h36m"), "rig": ("rig", "synth_rig")}  # layout -> (module, function)


def writer(layout: str):
    """The synthetic writer of a layout: fn(raw, frames, scale, seed, workers, subjects, actions, keyframes)."""
    from importlib import import_module

    module, name = WRITERS[layout]
    return getattr(import_module(f"{__name__}.{module}"), name)
