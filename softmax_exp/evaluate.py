"""Evaluation: what K trained models predict on a set of images, and the counts that make accuracy and
the confusion matrix. Predicting for many models is one matrix product per chunk of images."""

from collections.abc import Sequence

import torch
from torch import nn

from softmax_exp.data import to_unit_interval
from softmax_exp.model import CLASSES

EVAL_ROWS = 1000  # images turned into floats at a time: 3 MB, not 31 MB for the test set


@torch.no_grad()
def predict(models: Sequence[nn.Linear], images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The class each model predicts for each row of pixel bytes, fed in [0, scale]: (N, K) for N images
    and K models."""
    weight = torch.cat([model.weight for model in models])  # (K * 10, 784): all models side by side
    bias = torch.cat([model.bias for model in models])
    return torch.cat(
        [
            torch.addmm(bias, to_unit_interval(rows, scale=scale), weight.t())
            .view(len(rows), len(models), CLASSES)
            .argmax(dim=2)
            for rows in images.split(EVAL_ROWS)
        ]
    )


def correct(
    models: Sequence[nn.Linear], images: torch.Tensor, labels: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """What each model predicts (N, K), and how many of the N images each one classifies right (K,)."""
    predicted = predict(models, images, scale)
    return predicted, (predicted == labels.unsqueeze(1)).sum(dim=0)


def confusion_counts(predicted: torch.Tensor, labels: torch.Tensor) -> list[list[int]]:
    """counts[true][predicted] for one model's predictions (N,) against the true labels (N,)."""
    pairs = labels.cpu() * CLASSES + predicted.cpu()
    return torch.bincount(pairs, minlength=CLASSES**2).view(CLASSES, CLASSES).tolist()
