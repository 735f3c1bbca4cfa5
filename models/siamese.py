"""The Siamese synchronization / flip network F (paper, section 3.3).

F_i(x) = omega_i(ReLU(fuse(Phi(x1), Phi(x2)))), i = 1 (sync), 2 (flip), with the product as
the default fusion and concatenation, sum and difference as the ablations (h)-(j).

A ResNet's pooled features come after a ReLU, so they are never negative, nor is their product:
the ReLU after the product then does nothing, and the paper's reading of why the product wins
(entries whose signs disagree become zero) cannot happen. With `signed=True` the features that
are fused are pooled before the last ReLU of the last block (signed), so it can.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURES, backbone, through_layer3

FUSIONS = ("mult", "concat", "add", "diff")


def fuse(f1: torch.Tensor, f2: torch.Tensor, fusion: str) -> torch.Tensor:
    """[P, D] x 2 -> [P, D] (or [P, 2D] for concat), ReLU applied."""
    if fusion == "mult":
        z = f1 * f2
    elif fusion == "concat":
        z = torch.cat([f1, f2], dim=1)
    elif fusion == "add":
        z = f1 + f2
    elif fusion == "diff":
        z = f1 - f2
    else:
        raise ValueError(f"fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
    return torch.relu(z)


class SiameseSync(nn.Module):
    """forward(x1, x2) -> (sync_logit [P], flip_logit [P]); one backbone pass over both images."""

    def __init__(self, arch: str = "resnet18", fusion: str = "mult", weights=None, signed: bool = False):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
        self.fusion, self.signed = fusion, signed
        self.phi = backbone(arch, weights)
        dim = FEATURES[arch] * (2 if fusion == "concat" else 1)
        self.omega_sync = nn.Linear(dim, 1)
        self.omega_flip = nn.Linear(dim, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(torch.cat([x1, x2]))
        z = fuse(f[: len(x1)], f[len(x1):], self.fusion)
        return self.omega_sync(z)[:, 0], self.omega_flip(z)[:, 0]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D]: the pooled features the heads fuse (signed: before the last ReLU)."""
        return signed_features(self.phi, x) if self.signed else self.phi(x)


def signed_features(phi: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A torchvision ResNet's pooled features with its last block's final ReLU left out: [B, D], signed."""
    return pre_activation(phi, x).mean((2, 3))


def pre_activation(phi: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """[B, D, h, w]: the last block's output before its final ReLU (ReLU of it is layer4's output)."""
    x = through_layer3(phi, x)
    for block in phi.layer4[:-1]:
        x = block(x)
    last = phi.layer4[-1]
    identity = x if last.downsample is None else last.downsample(x)
    out = last.bn1(last.conv1(x))
    if hasattr(last, "conv3"):  # Bottleneck
        out = last.bn2(last.conv2(last.relu(out)))
        out = last.bn3(last.conv3(last.relu(out)))
    else:  # BasicBlock
        out = last.bn2(last.conv2(last.relu(out)))
    return out + identity
