"""Training targets: hard (class indices) or soft (a probability distribution per example)."""

import torch
from omegaconf import DictConfig

from softmax_exp.losses import softmax
from softmax_exp.model import CLASSES
from softmax_exp.teacher import Teacher


def smooth(labels: torch.Tensor, smoothing: float, classes: int = CLASSES) -> torch.Tensor:
    """(1 - eps) * one_hot(y) + eps / K: the true class keeps 1 - eps + eps/K, every class gets eps/K.

    This is exactly the target that torch's CrossEntropyLoss(label_smoothing=eps) uses.
    """
    one_hot = torch.nn.functional.one_hot(labels, classes).float()
    return one_hot * (1 - smoothing) + smoothing / classes


def distill(teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """alpha * softmax(z / T) + (1 - alpha) * one_hot(y), z the teacher's logits: a distribution per example.

    Unlike smoothing's even eps/K, the teacher puts its doubt where it sees a likeness (a shirt's mass on
    T-shirt and pullover, not on sneaker); T > 1 flattens its distribution so that doubt shows.
    """
    one_hot = torch.nn.functional.one_hot(labels, teacher_logits.shape[1]).float()
    return alpha * softmax(teacher_logits / temperature) + (1 - alpha) * one_hot


def build_targets(
    labels_cfg: DictConfig, labels: torch.Tensor, images: torch.Tensor | None = None, teacher: Teacher | None = None
) -> torch.Tensor:
    """Targets for every training example, built once and indexed by batch; labels=teacher needs the
    training images (pixel bytes) and the loaded teacher."""
    if labels_cfg.name == "soft":
        return smooth(labels, labels_cfg.smoothing)
    if labels_cfg.name == "teacher":
        return distill(teacher.logits(images), labels, labels_cfg.temperature, labels_cfg.alpha)
    return labels
