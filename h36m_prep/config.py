"""How a store is built: `BuildConfig`, whose fields are `h36m-prep build`'s options."""
from __future__ import annotations

import dataclasses

from . import store as S
from .errors import ConfigError
from .options import option
from .sources import LAYOUTS


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """How a store is built (`h36m-prep build`'s options are made from these fields)."""

    crop_size: int = option(256, "side S of the S x S crops", units="px")
    margin: float = option(0.25, "space around the joints (without poses: the person's box), per side",
                           units="fraction of the box")
    bg_samples: int = option(48, "frames per view sampled for its median background")
    bg_tolerance: int = option(8, "samples within this many grey levels agree on the median background",
                               units="grey levels")
    bg_vote_scale: int = option(1, "the median background's vote (which sample shows the room at each pixel) runs on "
                                "the samples shrunk to 1/this of the frame's size, the median itself at full size; "
                                "2 is 1.6x faster at 1000 px and as close to the room where the person moves "
                                "(benchmarks/background_vote.py), but a person still in most samples can stay as a "
                                "ghost")
    bg_crops: int = option(16, "background crops per view in the background bank")
    mask_threshold: float = option(20.0, "foreground where a channel differs from the background by more",
                                   units="grey levels")
    move_threshold: float = option(25.0, "a frame is `moving` when a joint moved more since the last kept one",
                                   units="mm")
    subjects: tuple[str, ...] | None = option(None, "subjects (a rig: sessions) to build, comma-separated [default: all in RAW]")
    skip_bad: bool = option(False, "skip a broken sequence with a warning instead of stopping")
    keep_damaged: bool = option(False, "keep the takes public Human3.6M toolkits exclude (S9 Greeting-2, "
                                "SittingDown-2, Waiting-1; S11 Directions camera 54138969)")
    layout: str | None = option(None, "the raw layout (rig: RIG/<take>/<camera>.<ext>, docs/rig.md); one of h36m, "
                                "rig [default: detected from RAW]", choices=LAYOUTS)
    test_takes: tuple[str, ...] = option((), "rig: the takes of the test split")
    calib_units: str = option("m", "rig: units of the translations in calibration.toml", choices=("m", "mm"))
    median_per: str = option("rig", "rig: median backgrounds pooled over the takes of a split, or per take (a rig "
                             "moved between takes)", choices=("rig", "take"))
    move_silhouette: float = option(0.01, "without poses: the share of the 32 x 32 silhouette that must change for "
                                    "the `moving` column", units="fraction")
    track_seconds: float = option(0.1, "without poses: the window that smooths the crop's path", units="s")
    size_seconds: float = option(1.0, "without poses: the window of the crop size's running 80th percentile",
                                 units="s")
    image_codec: str = option("auto", "the crops: lz4 (lossless), raw (uncompressed: no decode on reading, for a "
                              "store that fits in memory), jpeg[:QUALITY] (one JPEG per frame, quality 90 by default), "
                              "or auto: jpeg:90 for real videos, lz4 for the built-in synthetic data")
    every: int = option(1, "store every K-th frame of the training sequences (test sequences whole, for the "
                        "evaluation); d_min and d_max stay in frames of the videos")

    def __post_init__(self):
        if self.layout not in (None, *LAYOUTS):
            raise ConfigError(f"--layout {self.layout}: expected one of {', '.join(LAYOUTS)}")
        if self.calib_units not in ("m", "mm"):
            raise ConfigError(f"--calib-units {self.calib_units}: expected m or mm")
        if self.median_per not in ("rig", "take"):
            raise ConfigError(f"--median-per {self.median_per}: expected rig or take")
        if self.image_codec != "auto":
            try:
                S.parse_image_codec(self.image_codec)
            except ValueError as e:
                raise ConfigError(f"--image-codec: {e}") from None
        if int(self.every) < 1:
            raise ConfigError(f"--every {self.every}: expected a whole number >= 1")
        limits = {"crop_size": (16, 4096), "bg_samples": (1, None), "bg_crops": (1, None), "bg_tolerance": (0, 255),
                  "bg_vote_scale": (1, 16),
                  "mask_threshold": (0, 254), "margin": (0, 10), "move_threshold": (0, None),
                  "move_silhouette": (0, 1), "track_seconds": (0, None), "size_seconds": (0, None)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not (lo <= value and (hi is None or value <= hi)) or value != value:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: expected a value from {lo} "
                                  f"{'up' if hi is None else f'to {hi}'}")
