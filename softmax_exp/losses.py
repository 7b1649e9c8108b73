"""Softmax and cross-entropy by hand, next to torch's nn.CrossEntropyLoss.

Every loss takes raw logits (N, K), or (N, K, d1, ...) with the class on dim 1 as nn.CrossEntropyLoss takes
them, and either integer class targets (N, d1, ...) or class probabilities shaped like the logits, and returns
the loss of each example (N, d1, ...); the trainer weighs each by 1/B in backward(), a batch mean's gradient.
`scratch` is the stable form; `naive` is the textbook's first formula, kept to show why it is not used.
"""

import math

import torch
from torch import nn

# float32 exp(z) is inf above this z (and 0 below about -103.97): the naive softmax breaks past it.
EXP_OVERFLOW = math.log(torch.finfo(torch.float32).max)  # 88.72


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


def naive_softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax(z)_k = exp(z_k) / sum_j exp(z_j), exactly as written: no shift, so exp(z) can overflow."""
    exp = logits.exp()
    return exp / exp.sum(dim=1, keepdim=True)


def naive_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """H(y, p) = -sum_k y_k log p_k with p = naive_softmax(z): inf or NaN once exp over- or underflows."""
    probs = naive_softmax(logits)
    if targets.dtype == torch.long:  # class indices: y is one-hot, so the sum keeps one term
        return -probs.gather(1, targets.unsqueeze(1)).squeeze(1).log()
    return -(targets * probs.log()).sum(dim=1)


def naive_failure(max_abs_logit: float) -> str:
    """Why loss=naive gave inf or NaN, from the largest |logit| of the epoch it happened in."""
    fix = "use loss=scratch or loss=torch, which subtract each row's max before exp"
    if max_abs_logit > EXP_OVERFLOW:
        return (
            f"exp overflow in the unshifted softmax of loss=naive: |logit| reached {max_abs_logit:.4g}, and float32 "
            f"exp(z) is inf past z = {EXP_OVERFLOW:.2f} (then inf / inf = nan); {fix}"
        )
    return (
        f"exp underflow in the unshifted softmax of loss=naive: a true class's exp(z) / sum exp rounded to 0 "
        f"(|logit| up to {max_abs_logit:.4g}), and -log 0 = inf; {fix}"
    )


# loss=NAME: a callable (logits, targets) -> the loss of each example; conf/loss/ has one file each.
LOSSES = {"naive": naive_cross_entropy, "scratch": cross_entropy, "torch": nn.CrossEntropyLoss(reduction="none")}


def build_loss(name: str):
    return LOSSES[name]
