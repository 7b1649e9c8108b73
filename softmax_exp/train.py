"""The training loop: minibatch SGD over in-memory tensors, one line of metrics per epoch."""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from omegaconf import DictConfig
from torch import nn

from softmax_exp.config import resolve_device
from softmax_exp.data import FashionMNIST, to_unit_interval
from softmax_exp.errors import DivergedError
from softmax_exp.labels import build_targets
from softmax_exp.losses import build_loss
from softmax_exp.model import build_model
from softmax_exp.optimizers import build_optimizer

log = logging.getLogger(__name__)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float  # mean loss over the epoch's examples, measured as they were trained on
    train_acc: float  # fraction of training examples classified right during the epoch
    test_acc: float  # fraction of the 10,000 test images classified right after the epoch
    epoch_seconds: float  # training plus test evaluation

    def line(self) -> str:
        return (
            f"epoch {self.epoch:>3}  train_loss={self.train_loss:.4f}  train_acc={self.train_acc:.4f}  "
            f"test_acc={self.test_acc:.4f}  seconds={self.epoch_seconds:.3f}"
        )


@dataclass
class TrainResult:
    model: nn.Linear
    device: torch.device
    history: list[EpochMetrics] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return asdict(self.history[-1])


EVAL_ROWS = 1000  # images turned into floats at a time when predicting: 3 MB, not 31 MB for the test set


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The predicted class of each row of pixel bytes (N, 784)."""
    return torch.cat([model(to_unit_interval(rows)).argmax(dim=1) for rows in images.split(EVAL_ROWS)])


def train(cfg: DictConfig, data: FashionMNIST, on_epoch: Callable[[EpochMetrics], None] | None = None) -> TrainResult:
    """Train softmax regression as `cfg` says; raise DivergedError as soon as the loss is not finite."""
    device = resolve_device(cfg.device)
    train_images, train_labels = data.train.images, data.train.labels
    if cfg.data.limit is not None:
        train_images, train_labels = train_images[: cfg.data.limit], train_labels[: cfg.data.limit]
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    test_images, test_labels = data.test.images.to(device), data.test.labels.to(device)
    targets = build_targets(cfg.labels, train_labels)

    model = build_model(cfg.seed).to(device)
    loss_fn = build_loss(cfg.loss.name)
    optimizer = build_optimizer(cfg.optimizer.name, model.parameters(), cfg.lr)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # on the CPU, so every device sees the same order
    count = len(train_labels)
    # One batch buffer, reused every step: on the CPU a fresh 800 KB tensor per step costs more than the
    # matmul (the allocator maps new pages and faults them in), about half of each epoch.
    batch_bytes = torch.empty(cfg.batch_size, train_images.shape[1], dtype=torch.uint8, device=device)
    batch_pixels = torch.empty(cfg.batch_size, train_images.shape[1], device=device)

    result = TrainResult(model, device)
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(count, generator=shuffle).to(device)
        batches = order.split(cfg.batch_size)
        # Kept on the device and reduced once per epoch: reading them every step would cost a sync each.
        batch_losses, batch_logits = [], []
        for batch in batches:
            pixels, pixel_bytes = batch_pixels[: len(batch)], batch_bytes[: len(batch)]
            torch.index_select(train_images, 0, batch, out=pixel_bytes)
            logits = model(to_unit_interval(pixel_bytes, out=pixels))
            loss = loss_fn(logits, targets.index_select(0, batch)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
            batch_logits.append(logits.detach())
        batch_sizes = torch.tensor([len(batch) for batch in batches], device=device)
        train_correct = (torch.cat(batch_logits).argmax(dim=1) == train_labels[order]).sum()
        test_correct = (predict(model, test_images) == test_labels).sum()
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=(torch.stack(batch_losses) * batch_sizes).sum().item() / count,  # batch means -> epoch mean
            train_acc=train_correct.item() / count,
            test_acc=test_correct.item() / len(test_labels),
            epoch_seconds=time.perf_counter() - start,
        )
        if not math.isfinite(metrics.train_loss):
            raise DivergedError(
                f"training diverged at epoch {epoch}: train_loss={metrics.train_loss} with lr={cfg.lr}; "
                "lower the learning rate (0.1 is the textbook value)"
            )
        log.info(metrics.line())
        result.history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
    return result
