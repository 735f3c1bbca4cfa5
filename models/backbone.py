"""The shared backbone Phi: a torchvision ResNet up to global average pooling."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet18n": 256}


class NarrowResNet18(torchvision.models.resnet.ResNet):
    """ResNet-18 at half width (stages of 32, 64, 128, 256 channels; about a quarter of the
    FLOPs): the `resnet18n` of the CPU preset. Same module names as torchvision's, so freezing,
    checkpoints and the forward pass are shared."""

    def __init__(self, widths=(32, 64, 128, 256), layers=(2, 2, 2, 2)):
        nn.Module.__init__(self)
        block = torchvision.models.resnet.BasicBlock
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, widths[0], layers[0])
        self.layer2 = self._make_layer(block, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(block, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(block, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3], 1000)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def through_layer3(phi: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The feature map of a ResNet backbone after its stem and first three stages."""
    x = phi.maxpool(phi.relu(phi.bn1(phi.conv1(x))))
    return phi.layer3(phi.layer2(phi.layer1(x)))


def backbone(arch: str = "resnet18", weights: str | Path | None = None) -> nn.Module:
    """ResNet with `fc` removed: x [B, 3, H, W] -> pooled features [B, FEATURES[arch]].

    weights: None (random init, as in the paper) or a local state-dict file of the same
    architecture (e.g. an ImageNet checkpoint the user downloaded); nothing is fetched.
    """
    if arch not in FEATURES:
        raise ValueError(f"arch {arch!r}: choose one of {', '.join(FEATURES)}")
    net = NarrowResNet18() if arch == "resnet18n" else getattr(torchvision.models, arch)(weights=None)
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


