"""Training targets: hard (class indices) or soft (a probability distribution per example)."""

import torch
from omegaconf import DictConfig

from softmax_exp.model import CLASSES


def smooth(labels: torch.Tensor, smoothing: float, classes: int = CLASSES) -> torch.Tensor:
    """(1 - eps) * one_hot(y) + eps / K: the true class keeps 1 - eps + eps/K, every class gets eps/K.

    This is exactly the target that torch's CrossEntropyLoss(label_smoothing=eps) uses.
    """
    one_hot = torch.nn.functional.one_hot(labels, classes).float()
    return one_hot * (1 - smoothing) + smoothing / classes


def build_targets(labels_cfg: DictConfig, labels: torch.Tensor) -> torch.Tensor:
    """Targets for every training example, built once and indexed by batch."""
    if labels_cfg.name == "soft":
        return smooth(labels, labels_cfg.smoothing)
    return labels
