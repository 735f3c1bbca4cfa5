"""Configs are frozen dataclasses, saved as JSON beside every checkpoint. Presets are instances.

Ablation switches of Table 1 (paper) live here and are read in one place (`sampler_config`,
`mask_labels`): tasks (a)-(g), fusion (h)-(k), background (a)-(d), views (l)-(m).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pairloader import SamplerConfig
from pairloader.sampler import JITTER

BACKGROUNDS = {"kept": (1.0, 0.0, 0.0), "removed": (0.0, 1.0, 0.0), "substituted": (0.0, 0.0, 1.0),
               "mixed": (0.0, 0.5, 0.5)}


# Fields that cannot change what a run computes: a resumed run may change them.
HARMLESS = frozenset({"workers", "log_every", "checkpoint_every", "eval_every", "uint8_batches"})


class JsonConfig:
    """save / load of a flat config dataclass as the JSON beside its run."""

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path):
        return cls(**json.loads(Path(path).read_text()))


@dataclasses.dataclass(frozen=True)
class PretrainConfig(JsonConfig):
    arch: str = "resnet18"
    fusion: str = "mult"             # mult | concat | add | diff
    tasks: str = "both"              # sync | flip | both
    background: str = "mixed"        # kept | removed | substituted | mixed (removed:substituted 50:50)
    views: str = "multi"             # multi | single (pairs from one camera, augmentations only)
    share_anchor: bool = False       # a triplet's three pairs show one anchor image (rendered once)
    crop_jitter: bool = False        # window scale and shift jitter (ours; the paper augments with flips only)
    input_size: int = 224
    batch: int = 16                  # anchors per step (3 pairs each)
    steps: int = 200_000
    lr: float = 1e-4
    lr_min: float = 1e-7
    warmup: int = 0                  # steps of linear lr warm-up (not in the paper)
    weight_decay: float = 1e-4
    d_min: int = 4
    d_max: int = 128
    seed: int = 0
    weights: str | None = None       # local state-dict file for the backbone
    backend: str = "auto"            # loader backend: auto | dali | opencv | torch
    workers: int = 2                 # loader: DALI reader processes, or render threads of the CPU backends
    uint8_batches: bool = False      # OpenCV backend: uint8 batches, normalized on the device after the transfer
    checkpoint_every: int = 5000
    log_every: int = 50
    eval_batches: int = 100          # pretext accuracy on the test (and training) subjects at the end
    eval_every: int = 0              # also every this many steps, on a quarter as many batches (eval.jsonl)
    bf16: bool = True                # on a GPU
    channels_last: bool = True       # on a GPU
    compile: bool = False

    def __post_init__(self):
        choices = {"fusion": ("mult", "concat", "add", "diff"), "tasks": ("sync", "flip", "both"),
                   "background": tuple(BACKGROUNDS), "views": ("multi", "single")}
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field}={getattr(self, field)!r}: choose one of {', '.join(allowed)}")

    def sampler_config(self) -> SamplerConfig:
        single = self.views == "single"
        view = JITTER if self.crop_jitter else {}
        return SamplerConfig(batch=self.batch, d_min=self.d_min, d_max=self.d_max, out_size=self.input_size,
                             bg_mix=BACKGROUNDS[self.background], single_view=single,
                             rotation=15.0 if single else 0.0, share_anchor=self.share_anchor, **view)


PRETRAIN_PRESETS = {
    "paper": PretrainConfig(),
    "tiny": PretrainConfig(input_size=64, batch=8, steps=1200, lr=6e-4, lr_min=1e-5, backend="auto",
                           checkpoint_every=200, log_every=25, eval_batches=20),
    # CPU scale, meant to learn both heads within an hour on 2 cores: a half-width ResNet-18 at
    # 64 px, twice the tiny batch, a warm-up; background removed (Table 1's baseline (d))
    "cpu": PretrainConfig(arch="resnet18n", input_size=64, batch=16, steps=6000, lr=1e-3, lr_min=1e-5, warmup=300,
                          background="removed", backend="auto", checkpoint_every=500, log_every=50,
                          eval_batches=40, eval_every=1000),
}
# `sync-train demo`'s: the cpu preset cut to about 5 minutes on 2 cores, so that the whole demo
# stays within about 15; it shows the line running, not a task learned (the cpu preset does that)
PRETRAIN_PRESETS["demo"] = dataclasses.replace(PRETRAIN_PRESETS["cpu"], steps=600, warmup=100, checkpoint_every=200,
                                               eval_every=0)


BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet18n": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}


def frozen_modules(arch: str, spec: str) -> list[str]:
    """The names of the modules that `spec` freezes in a backbone of `arch` (paper: "we freeze
    the first 3 residual blocks", read two ways):

      none       nothing
      stages:N   the stem (conv1, bn1) and the first N residual stages, layer1 .. layerN
      blocks:N   the stem and the first N residual blocks in forward order (ResNet-18:
                 layer1.0, layer1.1, layer2.0, ...)
    """
    if spec == "none":
        return []
    kind, _, count = str(spec).partition(":")
    stages = [f"layer{i + 1}" for i in range(4)]
    blocks = [f"layer{i + 1}.{b}" for i, n in enumerate(BLOCKS[arch]) for b in range(n)]
    units = {"stages": stages, "blocks": blocks}.get(kind)
    if units is None or not count.isdigit() or int(count) > len(units):
        raise ValueError(f"freeze={spec!r}: choose none, stages:N (N <= {len(stages)}) or blocks:N "
                         f"(N <= {len(blocks)} for {arch})")
    return ["conv1", "bn1"] + units[:int(count)]


PROTOCOLS = {"S1": ("S1",), "All": ("S1", "S5", "S6", "S7", "S8")}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(JsonConfig):
    """Transfer to 3D pose (paper, section 3.4): a linear layer on the pooled features of Phi,
    what `freeze` names frozen (none | stages:N | blocks:N, see frozen_modules),
    MSE on standardized targets, flip augmentation, images with the background removed (the
    paper's main rows) or kept ("with background")."""

    init: str = "random"             # a pretrain run folder | random | imagenet:PATH (local state dict)
    protocol: str = "All"            # S1 | All: the training subjects that give supervision
    arch: str = "resnet18"
    freeze: str = "stages:3"         # none | stages:N | blocks:N (each with the stem)
    background: str = "removed"      # removed | kept
    flip: bool = True
    input_size: int = 224
    batch: int = 16
    steps: int = 200_000
    lr: float = 1e-4
    lr_min: float = 1e-7
    warmup: int = 0                  # steps of linear lr warm-up (not in the paper)
    weight_decay: float = 1e-4
    seed: int = 0
    backend: str = "auto"
    workers: int = 2                 # loader: DALI reader processes, or render threads of the CPU backends
    uint8_batches: bool = False      # OpenCV backend: uint8 batches, normalized on the device after the transfer
    checkpoint_every: int = 5000
    log_every: int = 50
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if isinstance(self.freeze, int):  # configs saved before the two readings: stages
            object.__setattr__(self, "freeze", f"stages:{self.freeze}")
        if self.arch not in BLOCKS:
            raise ValueError(f"arch={self.arch!r}: choose one of {', '.join(BLOCKS)}")
        frozen_modules(self.arch, self.freeze)  # a clear error for a bad spec
        if self.background not in ("removed", "kept"):
            raise ValueError(f"background={self.background!r}: choose removed or kept")

    @property
    def subjects(self) -> tuple[str, ...]:
        return PROTOCOLS[self.protocol]


FINETUNE_PRESETS = {
    "paper": FinetuneConfig(),
    "tiny": FinetuneConfig(input_size=64, batch=32, steps=400, lr=1e-3, lr_min=1e-5, backend="auto",
                           checkpoint_every=200, log_every=25),
    "cpu": FinetuneConfig(arch="resnet18n", input_size=64, batch=32, steps=400, lr=1e-3, lr_min=1e-5, warmup=50,
                          backend="auto", checkpoint_every=200, log_every=25),
}


def mask_labels(batch: dict, tasks: str) -> tuple:
    """(sync_label, flip_label) with the labels of a task that is switched off set to -1."""
    sync, flip = batch["sync_label"], batch["flip_label"]
    if tasks == "flip":
        sync = sync.new_full(sync.shape, -1)
    elif tasks == "sync":
        flip = flip.new_full(flip.shape, -1)
    return sync, flip
