"""The pose regressor P(x) = omega_p(Phi(x)) (paper, section 3.4): one linear layer on the
pooled features, predicting the standardized 16 non-root joints."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURES, backbone


class PoseRegressor(nn.Module):
    """forward(x [B, 3, H, W]) -> [B, 16, 3] standardized joints (the root is fixed at zero)."""

    def __init__(self, arch: str = "resnet18", weights=None, joints: int = 16):
        super().__init__()
        self.phi = backbone(arch, weights)
        self.omega_p = nn.Linear(FEATURES[arch], joints * 3)
        self.joints = joints

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.omega_p(self.phi(x)).view(-1, self.joints, 3)
