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
from softmax_exp.losses import build_loss, naive_failure
from softmax_exp.model import build_model
from softmax_exp.noise import add_label_noise
from softmax_exp.optimizers import build_optimizer
from softmax_exp.teacher import Teacher, load_teacher

log = logging.getLogger(__name__)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float  # mean loss over the epoch's examples, measured as they were trained on
    train_acc: float  # fraction of training examples classified right during the epoch
    test_acc: float  # fraction of the 10,000 test images classified right after the epoch
    epoch_seconds: float  # training plus test evaluation
    max_abs_logit: float  # the largest |logit| of the epoch's training steps (float32 exp overflows past 88.7)

    def line(self) -> str:
        return (
            f"epoch {self.epoch:>3}  train_loss={self.train_loss:.4f}  train_acc={self.train_acc:.4f}  "
            f"test_acc={self.test_acc:.4f}  seconds={self.epoch_seconds:.3f}  max_abs_logit={self.max_abs_logit:.4g}"
        )


@dataclass
class TrainResult:
    model: nn.Linear
    device: torch.device
    history: list[EpochMetrics] = field(default_factory=list)
    pixel_scale: float = 1.0  # the model takes pixels in [0, pixel_scale] (data.pixel_scale)
    labels_changed: int = 0  # training labels that data.label_noise replaced
    teacher: Teacher | None = None  # labels=teacher: where the soft labels came from

    @property
    def final(self) -> dict[str, float]:
        return asdict(self.history[-1])


EVAL_ROWS = 1000  # images turned into floats at a time when predicting: 3 MB, not 31 MB for the test set


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The predicted class of each row of pixel bytes (N, 784), fed in [0, scale]."""
    return torch.cat([model(to_unit_interval(rows, scale=scale)).argmax(dim=1) for rows in images.split(EVAL_ROWS)])


def train(cfg: DictConfig, data: FashionMNIST, on_epoch: Callable[[EpochMetrics], None] | None = None) -> TrainResult:
    """Train softmax regression as `cfg` says; raise DivergedError at the end of the first epoch whose loss
    is not finite (that epoch is still reported)."""
    device = resolve_device(cfg.device)
    train_images, train_labels = data.train.images, data.train.labels
    if cfg.data.limit is not None:
        train_images, train_labels = train_images[: cfg.data.limit], train_labels[: cfg.data.limit]
    train_labels, labels_changed = add_label_noise(train_labels, cfg.data.label_noise, cfg.seed)
    train_images, train_labels = train_images.to(device), train_labels.to(device)
    test_images, test_labels = data.test.images.to(device), data.test.labels.to(device)
    teacher = None
    if cfg.labels.name == "teacher":
        teacher = load_teacher(cfg.labels.teacher, cfg.tracking.uri, data.test, device)
    targets = build_targets(cfg.labels, train_labels, train_images, teacher)
    scale = cfg.data.pixel_scale

    model = build_model(cfg.seed).to(device)
    loss_fn = build_loss(cfg.loss.name)
    optimizer = build_optimizer(cfg.optimizer.name, model.parameters(), cfg.lr)
    shuffle = torch.Generator().manual_seed(cfg.seed)  # on the CPU, so every device sees the same order
    count = len(train_labels)
    # One batch buffer, reused every step: on the CPU a fresh 800 KB tensor per step costs more than the
    # matmul (the allocator maps new pages and faults them in), about half of each epoch.
    batch_bytes = torch.empty(cfg.batch_size, train_images.shape[1], dtype=torch.uint8, device=device)
    batch_pixels = torch.empty(cfg.batch_size, train_images.shape[1], device=device)

    result = TrainResult(model, device, pixel_scale=scale, labels_changed=labels_changed, teacher=teacher)
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(count, generator=shuffle).to(device)
        batches = order.split(cfg.batch_size)
        # Kept on the device and reduced once per epoch: reading them every step would cost a sync each.
        batch_losses, batch_logits = [], []
        for batch in batches:
            pixels, pixel_bytes = batch_pixels[: len(batch)], batch_bytes[: len(batch)]
            torch.index_select(train_images, 0, batch, out=pixel_bytes)
            logits = model(to_unit_interval(pixel_bytes, out=pixels, scale=scale))
            loss = loss_fn(logits, targets.index_select(0, batch)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
            batch_logits.append(logits.detach())
        batch_sizes = torch.tensor([len(batch) for batch in batches], device=device)
        epoch_logits = torch.cat(batch_logits)
        train_correct = (epoch_logits.argmax(dim=1) == train_labels[order]).sum()
        test_correct = (predict(model, test_images, scale) == test_labels).sum()
        # NaN logits only follow weights gone NaN: they are not a size, so they are left out.
        max_abs_logit = epoch_logits.abs().nan_to_num(nan=0.0, posinf=math.inf).amax()
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=(torch.stack(batch_losses) * batch_sizes).sum().item() / count,  # batch means -> epoch mean
            train_acc=train_correct.item() / count,
            test_acc=test_correct.item() / len(test_labels),
            epoch_seconds=time.perf_counter() - start,
            max_abs_logit=max_abs_logit.item(),
        )
        log.info(metrics.line())
        result.history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics)
        if not math.isfinite(metrics.train_loss):
            cause = f" with lr={cfg.lr}; lower the learning rate (0.1 is the textbook value)"
            if cfg.loss.name == "naive":
                cause = f", from {naive_failure(metrics.max_abs_logit)}"
            raise DivergedError(f"training diverged at epoch {epoch}: train_loss={metrics.train_loss}{cause}")
    return result
