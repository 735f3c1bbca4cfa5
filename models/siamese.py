"""The Siamese synchronization / flip network F (paper, section 3.3).

F_i(x) = omega_i(ReLU(fuse(Phi(x1), Phi(x2)))), i = 1 (sync), 2 (flip), with the product as
the default fusion and concatenation, sum and difference as the ablations (h)-(j).
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURES, backbone

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

    def __init__(self, arch: str = "resnet18", fusion: str = "mult", weights=None):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r}: choose one of {', '.join(FUSIONS)}")
        self.fusion = fusion
        self.phi = backbone(arch, weights)
        dim = FEATURES[arch] * (2 if fusion == "concat" else 1)
        self.omega_sync = nn.Linear(dim, 1)
        self.omega_flip = nn.Linear(dim, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.phi(torch.cat([x1, x2]))
        z = fuse(f[: len(x1)], f[len(x1):], self.fusion)
        return self.omega_sync(z)[:, 0], self.omega_flip(z)[:, 0]
