"""Softmax and cross-entropy by hand, next to torch's nn.CrossEntropyLoss.

Both losses take raw logits (N, K) and either integer class targets (N,) or class probabilities
(N, K), and return the loss of each example (N,); the trainer takes the batch mean per model.
"""

import torch
from torch import nn


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax(z)_k = exp(z_k) / sum_j exp(z_j), row by row."""
    # Subtracting the row max changes nothing (it cancels in the ratio) but keeps exp() <= 1: no overflow.
    exp = (logits - logits.max(dim=1, keepdim=True).values).exp()
    return exp / exp.sum(dim=1, keepdim=True)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax(z)_k = z_k - log sum_j exp(z_j)   (the LogSumExp form)."""
    # log(softmax(z)) would give log(0) = -inf once a probability underflows; this form never does.
    # The max is a constant shift that cancels, so no gradient needs to flow through it.
    shifted = logits - logits.max(dim=1, keepdim=True).values.detach()
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """H(y, p) = -sum_k y_k log p_k, for each example."""
    log_probs = log_softmax(logits)
    if targets.dtype == torch.long:  # class indices: y is one-hot, so the sum keeps one term
        return -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
    return -(targets * log_probs).sum(dim=1)


def build_loss(name: str):
    """The loss for `loss=NAME`: a callable (logits, targets) -> the loss of each example."""
    return {"scratch": cross_entropy, "torch": nn.CrossEntropyLoss(reduction="none")}[name]
