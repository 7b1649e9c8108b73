"""The training loop: minibatch SGD for K softmax-regression models in lock-step. A single run is K = 1.

Each model keeps everything that makes it its own job: weights, seed (its initial weights and the order
it sees the training set in), learning rate, loss, optimizer and targets. What the models share is the
fixed cost of a step: models with the same seed see the same batch, gathered once, and make one wide
matrix product; those that also share a loss and a kind of target make one loss call. Each model's
gradient stays its own, because backward() starts from the *sum* of the models' batch means.
"""

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from softmax_exp import evaluate
from softmax_exp.config import resolve_device
from softmax_exp.data import FashionMNIST, to_unit_interval
from softmax_exp.errors import DivergedError
from softmax_exp.labels import build_targets
from softmax_exp.losses import build_loss, naive_failure
from softmax_exp.model import CLASSES, build_model
from softmax_exp.noise import add_label_noise
from softmax_exp.optimizers import build_optimizer
from softmax_exp.teacher import Teacher, load_teacher

log = logging.getLogger(__name__)

# What every model of one lock-step group must share: they step through the same data, epoch by epoch.
LOCKSTEP_KEYS = ("batch_size", "epochs", "data.root", "data.limit", "data.pixel_scale", "device")


def lockstep_key(cfg: DictConfig) -> tuple:
    return tuple(OmegaConf.select(cfg, key) for key in LOCKSTEP_KEYS)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float  # mean loss over the epoch's examples, measured as they were trained on
    train_acc: float  # fraction of training examples classified right during the epoch
    test_acc: float  # fraction of the 10,000 test images classified right after the epoch
    epoch_seconds: float  # wall time of the epoch, training plus test evaluation, shared by its group's models
    max_abs_logit: float  # the largest |logit| of the epoch's training steps (float32 exp overflows past 88.7)

    def line(self) -> str:
        return (
            f"epoch {self.epoch:>3}  train_loss={self.train_loss:.4f}  train_acc={self.train_acc:.4f}  "
            f"test_acc={self.test_acc:.4f}  seconds={self.epoch_seconds:.3f}  max_abs_logit={self.max_abs_logit:.4g}"
        )


@dataclass
class TrainResult:
    """One model's training: its history, and after the last epoch its test predictions, or why it stopped."""

    model: nn.Linear
    history: list[EpochMetrics] = field(default_factory=list)
    test_predictions: torch.Tensor | None = None  # (10,000,) the class the final model gives each test image
    error: DivergedError | None = None
    labels_changed: int = 0  # training labels that data.label_noise replaced
    teacher: Teacher | None = None  # labels=teacher: where the soft labels came from

    @property
    def final(self) -> dict[str, float]:
        return asdict(self.history[-1])


@dataclass
class Bucket:
    """Models of one shard that share one loss call (one loss, one kind of target): columns start:stop."""

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    start: int
    stop: int
    targets: torch.Tensor  # (N, J) class indices or (N, J, 10) probabilities: the J members side by side


@dataclass
class Shard:
    """Models that see the same batches (one seed): one matrix product per step for all of them."""

    seed: int
    members: list[int]  # indices of the models, in the order of their columns, each bucket's together
    buckets: list[Bucket]
    labels: torch.Tensor  # (N, J) each member's training labels, for its training accuracy


def make_shards(active: list[int], cfgs: list[DictConfig], targets: list[torch.Tensor], labels: list[torch.Tensor]):
    by_seed = defaultdict(lambda: defaultdict(list))
    for k in active:
        by_seed[cfgs[k].seed][(cfgs[k].loss.name, targets[k].dim())].append(k)
    shards = []
    for seed, by_loss in by_seed.items():
        members, buckets = [], []
        for (loss, _), ks in by_loss.items():
            stacked = torch.stack([targets[k] for k in ks], dim=1)
            buckets.append(Bucket(build_loss(loss), len(members), len(members) + len(ks), stacked))
            members += ks
        shards.append(Shard(seed, members, buckets, torch.stack([labels[k] for k in members], dim=1)))
    return shards


def make_optimizers(active: list[int], cfgs: list[DictConfig], models: list[nn.Linear]) -> list:
    """One optimizer per implementation, with a parameter group (and so a learning rate) per model."""
    groups = defaultdict(list)
    for k in active:
        groups[cfgs[k].optimizer.name].append({"params": [models[k].weight, models[k].bias], "lr": cfgs[k].lr})
    return [build_optimizer(name, param_groups) for name, param_groups in groups.items()]


def train(
    cfgs: list[DictConfig],
    data: FashionMNIST,
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    on_group_epoch: Callable[[int, list[EpochMetrics]], None] | None = None,
) -> list[TrainResult]:
    """Train one model per config, all in lock-step; the configs must agree on LOCKSTEP_KEYS.

    on_epoch(k, metrics) follows each epoch of model k, on_group_epoch(epoch, metrics) each epoch of the
    group. A model whose loss is no longer finite stops after that epoch (still reported), with a
    DivergedError in its result; the others train on exactly as they would have without it.
    """
    first = cfgs[0]
    if any(lockstep_key(cfg) != lockstep_key(first) for cfg in cfgs):
        raise ValueError(f"models trained in lock-step must agree on {', '.join(LOCKSTEP_KEYS)}")
    device = resolve_device(first.device)
    images = data.train.images[: first.data.limit].to(device)
    labels = data.train.labels[: first.data.limit].to(device)
    test_images, test_labels = data.test.images.to(device), data.test.labels.to(device)
    count, batch_size, scale = len(labels), first.batch_size, first.data.pixel_scale

    results = [TrainResult(build_model(cfg.seed).to(device)) for cfg in cfgs]
    models = [result.model for result in results]
    # Each job's training labels (its seed picks the noisy ones) and targets, computed once per distinct kind.
    noisy = {key: add_label_noise(labels, *key) for key in {(cfg.data.label_noise, cfg.seed) for cfg in cfgs}}
    teachers = {
        cfg.labels.teacher: load_teacher(cfg.labels.teacher, cfg.tracking.uri, data.test, device)
        for cfg in cfgs
        if cfg.labels.name == "teacher"
    }
    job_labels, targets = [], []
    for cfg, result in zip(cfgs, results, strict=True):
        job_labels_k, result.labels_changed = noisy[(cfg.data.label_noise, cfg.seed)]
        result.teacher = teachers.get(cfg.labels.get("teacher"))
        job_labels.append(job_labels_k)
        targets.append(build_targets(cfg.labels, job_labels_k, images, result.teacher))
    # One generator per seed, on the CPU, so every device sees the same order; models that share a seed
    # share their batches, so each batch is gathered once per seed.
    shuffles = {seed: torch.Generator().manual_seed(seed) for seed in sorted({cfg.seed for cfg in cfgs})}
    # One batch buffer per seed, reused every step: on the CPU a fresh 800 KB tensor per step costs more
    # than the matmul (the allocator maps new pages and faults them in), about half of each epoch.
    batch_bytes = {
        seed: torch.empty(batch_size, images.shape[1], dtype=torch.uint8, device=device) for seed in shuffles
    }
    batch_pixels = {seed: torch.empty(batch_size, images.shape[1], device=device) for seed in shuffles}

    active = list(range(len(cfgs)))
    shards, optimizers = make_shards(active, cfgs, targets, job_labels), make_optimizers(active, cfgs, models)
    for epoch in range(1, first.epochs + 1):
        start = time.perf_counter()
        orders = {shard.seed: torch.randperm(count, generator=shuffles[shard.seed]).to(device) for shard in shards}
        # Kept on the device and reduced once per epoch: reading them every step would cost a sync each.
        step_losses, step_predictions, step_largest = defaultdict(list), defaultdict(list), defaultdict(list)
        for step_start in range(0, count, batch_size):
            for optimizer in optimizers:
                optimizer.zero_grad()
            total = 0
            for i, shard in enumerate(shards):
                batch = orders[shard.seed][step_start : step_start + batch_size]
                pixel_bytes = batch_bytes[shard.seed][: len(batch)]
                torch.index_select(images, 0, batch, out=pixel_bytes)
                pixels = to_unit_interval(pixel_bytes, out=batch_pixels[shard.seed][: len(batch)], scale=scale)
                width = len(shard.members)
                if width == 1:  # a single run: its own weights, no copy
                    weight, bias = models[shard.members[0]].weight, models[shard.members[0]].bias
                else:
                    weight = torch.cat([models[k].weight for k in shard.members])  # (J * 10, 784)
                    bias = torch.cat([models[k].bias for k in shard.members])
                logits = torch.addmm(bias, pixels, weight.t()).view(len(batch), width, CLASSES)
                batch_means = []
                for bucket in shard.buckets:
                    columns = logits[:, bucket.start : bucket.stop].reshape(-1, CLASSES)
                    batch_targets = bucket.targets.index_select(0, batch).flatten(0, 1)  # rows in the logits' order
                    each = bucket.loss_fn(columns, batch_targets).view(len(batch), bucket.stop - bucket.start)
                    batch_means.append(each.mean(dim=0))
                batch_means = torch.cat(batch_means) if len(batch_means) > 1 else batch_means[0]
                total = total + batch_means.sum()  # a sum, not a mean: each model keeps its own gradient scale
                step_losses[i].append(batch_means.detach())
                per_model = logits.detach()
                step_predictions[i].append(per_model.argmax(dim=2))
                step_largest[i].append(per_model.abs().amax(dim=(0, 2)))
            total.backward()
            for optimizer in optimizers:
                optimizer.step()

        batch_sizes = torch.tensor([len(b) for b in next(iter(orders.values())).split(batch_size)], device=device)
        losses, correct, largest, members = [], [], [], []
        for i, shard in enumerate(shards):
            losses.append((torch.stack(step_losses[i]) * batch_sizes.unsqueeze(1)).sum(dim=0) / count)
            seen_labels = shard.labels.index_select(0, orders[shard.seed])
            correct.append((torch.cat(step_predictions[i]) == seen_labels).sum(dim=0))
            # NaN logits only follow weights gone NaN: they are not a size, so they are left out.
            largest.append(torch.stack(step_largest[i]).nan_to_num(nan=0.0, posinf=math.inf).amax(dim=0))
            members += shard.members
        test_predictions = evaluate.predict([models[k] for k in members], test_images, scale)
        test_correct = (test_predictions == test_labels.unsqueeze(1)).sum(dim=0)
        train_loss, train_correct = torch.cat(losses).tolist(), torch.cat(correct).tolist()
        test_correct, largest = test_correct.tolist(), torch.cat(largest).tolist()  # one sync for the whole group
        seconds = time.perf_counter() - start

        trained = []
        for column, k in enumerate(members):
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss[column],
                train_acc=train_correct[column] / count,
                test_acc=test_correct[column] / len(test_labels),
                epoch_seconds=seconds,
                max_abs_logit=largest[column],
            )
            results[k].history.append(metrics)  # the failing epoch too: it shows where the logits went
            results[k].test_predictions = test_predictions[:, column]
            if on_epoch is not None:
                on_epoch(k, metrics)
            if math.isfinite(metrics.train_loss):
                trained.append(metrics)
                continue
            cause = f" with lr={cfgs[k].lr}; lower the learning rate (0.1 is the textbook value)"
            if cfgs[k].loss.name == "naive":
                cause = f", from {naive_failure(metrics.max_abs_logit)}"
            results[k].error = DivergedError(
                f"training diverged at epoch {epoch}: train_loss={metrics.train_loss}{cause}"
            )
            active.remove(k)
            shards, optimizers = make_shards(active, cfgs, targets, job_labels), make_optimizers(active, cfgs, models)
        if on_group_epoch is not None and trained:
            on_group_epoch(epoch, trained)
        if not active:
            break
    return results
