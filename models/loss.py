"""Loss (1) of the paper and the pretext accuracies.

With F1 = sigmoid(sync_logit) the probability of synchronization and F2 = 1 - sigmoid(flip_logit)
the probability of no flipping, loss (1) per triplet j (synchronized x_p, unsynchronized x_n,
flipped x_f) is  -[log F1(x_p) + log F2(x_p) + log(1 - F1(x_n)) + log(1 - F2(x_f))]:
binary cross-entropy of the sync head on pairs with sync_label 0/1 and of the flip head on pairs
with flip_label 0/1; label -1 (the sync head on flipped pairs, the flip head on unsynchronized
pairs) contributes nothing. The batch loss is the sum over all terms divided by the number of
triplets (P / 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ssl_loss(sync_logit: torch.Tensor, flip_logit: torch.Tensor, sync_label: torch.Tensor,
             flip_label: torch.Tensor) -> torch.Tensor:
    """Loss (1), averaged per triplet. Logits and labels [P]; labels in {1, 0, -1}."""
    total = sync_logit.new_zeros(())
    for logit, label in ((sync_logit, sync_label), (flip_logit, flip_label)):
        trained = label >= 0
        if trained.any():
            total = total + F.binary_cross_entropy_with_logits(
                logit[trained], label[trained].to(logit.dtype), reduction="sum")
    return total / (len(sync_label) / 3)


def accuracy(logit: torch.Tensor, label: torch.Tensor) -> tuple[int, int]:
    """(correct, counted) over the entries with a label >= 0."""
    trained = label >= 0
    return int(((logit[trained] > 0).long() == label[trained]).sum()), int(trained.sum())
