"""Configs are frozen dataclasses, saved as JSON beside every checkpoint. Presets are instances.

Ablation switches of Table 1 (paper) live here and are read in one place (`sampler_config`,
`mask_labels`): tasks (a)-(g), fusion (h)-(k), background (a)-(d), views (l)-(m).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from h36m_prep import store as S
from h36m_prep.errors import ConfigError
from h36m_prep.options import option
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


ARCHS = ("resnet18", "resnet18n", "resnet34", "resnet50")
BACKENDS = ("auto", "dali", "opencv", "torch")


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """The fields pretraining and fine-tuning share (declared once)."""

    arch: str = option("resnet18", "backbone: torchvision's ResNet, or resnet18n (ResNet-18 at half width)",
                       choices=ARCHS)
    input_size: int = option(224, "side of the network's input images", units="px")
    batch: int = option(16, "per step: anchors (pretraining; 3 pairs each) or images (fine-tuning)")
    steps: int = option(200_000, "optimizer steps")
    lr: float = option(1e-4, "peak learning rate of AdamW (cosine schedule)")
    lr_min: float = option(1e-7, "learning rate at the last step")
    warmup: int = option(0, "steps of linear learning-rate warm-up (not in the paper)")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    seed: int = option(0, "seed of the initialisation and of every batch")
    backend: str = option("auto", "loader backend (auto: DALI on a GPU, else OpenCV)", choices=BACKENDS)
    workers: int = option(2, "loader: DALI reader processes, or render threads of the CPU backends")
    uint8_batches: bool = option(False, "OpenCV backend: uint8 batches, normalized on the device after the transfer")
    checkpoint_every: int = option(5000, "steps between checkpoints (and on SIGINT or SIGTERM)")
    log_every: int = option(50, "steps between log lines (log.jsonl, TensorBoard)")
    bf16: bool = option(True, "bfloat16 autocast on a GPU")
    cpu_bf16: bool = option(False, "bfloat16 autocast on a CPU (for one that computes bf16 natively, where "
                            "benchmarks/train_throughput.py --precision shows it faster; changes the numbers)")
    channels_last: bool = option(True, "channels-last memory format on a GPU")
    compile: bool = option(False, "torch.compile the network")
    holdout: tuple[str, ...] = option((), "training subjects held out of this run (validation subjects, on which "
                                      "presets and options are chosen; the test subjects never are): not trained "
                                      "on, and reported as val_* in metrics.json [default: none]")

    def _check(self, choices: dict) -> None:
        object.__setattr__(self, "holdout", tuple(self.holdout))  # JSON gives a list
        for field, allowed in {"arch": ARCHS, "backend": BACKENDS, **choices}.items():
            if getattr(self, field) not in allowed:
                raise ConfigError(f"--{field.replace('_', '-')} {getattr(self, field)}: choose one of "
                                  f"{', '.join(allowed)}")
        for field in ("input_size", "batch"):
            if int(getattr(self, field)) < 1:
                raise ConfigError(f"--{field.replace('_', '-')} {getattr(self, field)}: must be at least 1")
        if int(self.steps) < 1:
            raise ConfigError(f"--steps {self.steps}: must be at least 1")


@dataclasses.dataclass(frozen=True)
class PretrainConfig(TrainConfig):
    """Self-supervised pretraining (paper, section 3.3); Table 1's ablations are switches here."""

    fusion: str = option("mult", "how the two views' features are fused, (h)-(k)",
                         choices=("mult", "concat", "add", "diff"))
    signed: bool = option(False, "fuse the features before the backbone's last ReLU (signed), so that the product "
                          "and ReLU zero the entries whose signs disagree, as the paper describes")
    tasks: str = option("both", "the pretext tasks trained, (a)-(g)", choices=("sync", "flip", "both"))
    background: str = option("mixed", "the images' background (mixed: removed and substituted 50:50)",
                             choices=tuple(BACKGROUNDS))
    views: str = option("multi", "pairs from two cameras, or from one (single: augmentations only), (l)-(m)",
                        choices=("multi", "single"))
    share_anchor: bool = option(False, "a triplet's three pairs show one anchor image (rendered once)")
    crop_jitter: bool = option(False, "window scale and shift jitter (the paper augments with flips only)")
    d_min: int = option(4, "unsynchronized pairs are more than this many frames apart", units="frames")
    d_max: int = option(128, "and less than this many", units="frames")
    recompress: int = option(0, "re-compress every crop as a JPEG of a random quality from this to 95 (0: off): hides "
                             "where each video's keyframes fell, a cue that synchronized cameras encoded alike share "
                             "(docs/training.md)")
    weights: str | None = option(None, "a local state-dict file to start the backbone from [default: random init]")
    eval_batches: int = option(100, "batches of the pretext accuracy on test (and training) subjects at the end")
    eval_every: int = option(0, "also every this many steps, on a quarter as many batches (eval.jsonl); 0: never")

    def __post_init__(self):
        self._check({"fusion": ("mult", "concat", "add", "diff"), "tasks": ("sync", "flip", "both"),
                     "background": tuple(BACKGROUNDS), "views": ("multi", "single")})
        if not (self.recompress == 0 or 1 <= self.recompress <= 95):
            raise ConfigError(f"--recompress {self.recompress}: a JPEG quality from 1 to 95, or 0 (off)")

    def sampler_config(self) -> SamplerConfig:
        single = self.views == "single"
        view = JITTER if self.crop_jitter else {}
        return SamplerConfig(batch=self.batch, d_min=self.d_min, d_max=self.d_max, out_size=self.input_size,
                             bg_mix=BACKGROUNDS[self.background], single_view=single,
                             rotation=15.0 if single else 0.0, share_anchor=self.share_anchor,
                             recompress=(self.recompress, 95) if self.recompress else (0, 0), **view)


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


PROTOCOLS = {"S1": ("S1",), "All": ("S1", "S5", "S6", "S7", "S8"), "store": ()}  # store: its training split


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """Transfer to 3D pose (paper, section 3.4): a linear layer on the pooled features of Phi,
    what `freeze` names frozen (see frozen_modules), MSE on standardized targets, flip
    augmentation, images with the background removed (the paper's main rows) or kept."""

    init: str = option("random", "the backbone's start: a pretrain run folder, random, or imagenet:PATH (a local "
                       "state dict)")
    protocol: str = option("All", "the training subjects that give supervision: S1, All (S1 S5 S6 S7 S8), or store: "
                           "every training subject of the store (a labelled rig's training takes)",
                           choices=tuple(PROTOCOLS))
    freeze: str = option("stages:3", "frozen: none, stages:N (the stem and the first N stages) or blocks:N (the stem "
                         "and the first N residual blocks)")
    background: str = option("removed", "the images' background", choices=("removed", "kept"))
    flip: bool = option(True, "random horizontal flips (left and right joints swapped)")

    def __post_init__(self):
        if isinstance(self.freeze, int):  # configs saved before the two readings: stages
            object.__setattr__(self, "freeze", f"stages:{self.freeze}")
        self._check({"protocol": tuple(PROTOCOLS), "background": ("removed", "kept")})
        try:
            frozen_modules(self.arch, self.freeze)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.protocol != "store" and set(self.subjects) <= set(self.holdout):
            raise ConfigError(f"--holdout {','.join(self.holdout)} leaves protocol {self.protocol} no subject to train on")

    @property
    def subjects(self) -> tuple[str, ...]:
        """The protocol's training subjects, without the held-out ones (protocol `store`: empty,
        see `subjects_in`)."""
        return tuple(s for s in PROTOCOLS[self.protocol] if s not in self.holdout)

    def subjects_in(self, store) -> tuple[str, ...]:
        """The training subjects in `store`: the protocol's, or with protocol `store` every
        subject (a rig: session) of the store's training split, without the held-out ones."""
        if self.protocol != "store":
            return self.subjects
        g = S.open_store(store)
        train = [s for s in S.subjects_of(g, "train") if s not in self.holdout]
        if not train:
            raise ConfigError(f"--protocol store: {store} has no training subject"
                              f"{' left after --holdout' if self.holdout else ''} to fine-tune on")
        return tuple(train)


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
