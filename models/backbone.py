"""The shared backbone Phi: a torchvision ResNet up to global average pooling."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


def backbone(arch: str = "resnet18", weights: str | Path | None = None) -> nn.Module:
    """ResNet with `fc` removed: x [B, 3, H, W] -> pooled features [B, FEATURES[arch]].

    weights: None (random init, as in the paper) or a local state-dict file of the same
    architecture (e.g. an ImageNet checkpoint the user downloaded); nothing is fetched.
    """
    if arch not in FEATURES:
        raise ValueError(f"arch {arch!r}: choose one of {', '.join(FEATURES)}")
    net = getattr(torchvision.models, arch)(weights=None)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"{path}: weights file not found; pass a local state-dict file of a "
                             f"torchvision {arch}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shape mismatches
            missing, unexpected = [str(e).splitlines()[1].strip()], []
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path}: not a {arch} state dict (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]}); pass weights of the same architecture")
    net.fc = nn.Identity()
    return net


def freeze(net: nn.Module, names: list[str]) -> None:
    """Freeze the named modules (`train.config.frozen_modules` says which): no gradients,
    batch-norm statistics fixed (call again after .train(), which re-enables them)."""
    for name in names:
        module = net.get_submodule(name)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)


