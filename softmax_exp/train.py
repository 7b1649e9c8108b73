"""The training loop: minibatch SGD for K softmax-regression models in lock-step. A single run is K = 1.

Each model keeps everything that makes it its own job: weights, seed (its initial weights and the order
it sees the training set in), learning rate, loss, optimizer and targets. What the models share is the
fixed cost of a step: one batched matrix product gives every model its logits (models with the same seed
see the same batch), one loss call serves all models that share a loss and a kind of target, and one
optimizer call all those that share a learning rate. Each model's gradient stays its own, because
backward() starts from every example's loss weighed 1/B, which is the gradient of each model's own batch mean.

The logits come out class by example, Z^T = W X^T + b: the class on dim 1, where the losses take it, and
the batch contiguous, so that the softmax over 10 classes runs along the batch (on the CPU about 10x faster
than over a last dimension of 10).
"""

import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from softmax_exp import evaluate
from softmax_exp.data import to_unit_interval
from softmax_exp.errors import DivergedError
from softmax_exp.losses import build_loss, naive_failure
from softmax_exp.model import CLASSES, PIXELS
from softmax_exp.optimizers import build_optimizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lockstep:
    """What every model of a lock-step group shares: the data it steps through, and how."""

    images: torch.Tensor  # (N, 784) the training images' pixel bytes, on the group's device
    labels: torch.Tensor  # (N,) their labels as the files give them: each job's noise is applied to a copy
    test_images: torch.Tensor  # (10,000, 784) pixel bytes, measured after every epoch
    test_labels: torch.Tensor  # (10,000,)
    batch_size: int  # examples per step
    epochs: int
    pixel_scale: float  # pixels are fed in [0, pixel_scale]
    validation_images: torch.Tensor | None = None  # (V, 784) held-out pixel bytes (data.validation), or none
    validation_labels: torch.Tensor | None = None  # (V,)


@dataclass(frozen=True)
class Learner:
    """One model and what makes its training its own."""

    model: nn.Linear  # its initial weights, on the group's device; trained in place
    seed: int  # the order it sees the training set in: models with one seed see the same batches
    lr: float
    loss: str  # a key of losses.LOSSES
    optimizer: str  # a key of optimizers.OPTIMIZERS
    labels: torch.Tensor  # (N,) its training labels (noisy ones included): what its training accuracy counts
    targets: torch.Tensor  # (N,) class indices or (N, 10) probabilities: what its loss compares against


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float  # mean loss over the epoch's examples, measured as they were trained on
    train_acc: float  # fraction of training examples classified right during the epoch
    test_acc: float  # fraction of the 10,000 test images classified right after the epoch
    epoch_seconds: float  # wall time of the epoch, training plus test evaluation, shared by its group's models
    max_abs_logit: float  # the largest |logit| of the epoch's training steps (float32 exp overflows past 88.7)
    val_acc: float | None = None  # fraction of the held-out images classified right after the epoch, if any

    def line(self) -> str:
        val_acc = "" if self.val_acc is None else f"val_acc={self.val_acc:.4f}  "
        return (
            f"epoch {self.epoch:>3}  train_loss={self.train_loss:.4f}  train_acc={self.train_acc:.4f}  {val_acc}"
            f"test_acc={self.test_acc:.4f}  seconds={self.epoch_seconds:.3f}  max_abs_logit={self.max_abs_logit:.4g}"
        )


@dataclass
class TrainResult:
    """One model's training: its history, and after the last epoch its test predictions, or why it stopped."""

    model: nn.Linear
    history: list[EpochMetrics] = field(default_factory=list)
    test_predictions: torch.Tensor | None = None  # (10,000,) the class the final model gives each test image
    error: DivergedError | None = None
    stopped_at: int | None = None  # the epoch after which it was stopped (pruned) while training well

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's metrics: val_acc only where there is a validation set."""
        return {key: value for key, value in asdict(self.history[-1]).items() if value is not None}


@dataclass
class Bucket:
    """The slots of the stack that share one loss call (one loss, one kind of target): the same block of
    `width` slots in every seed's row, so that their logits are a view of the stack's, not a copy."""

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    width: int  # slots in the block: the most models of this bucket that any one seed has
    targets: torch.Tensor  # (N * T,) class indices or (N * T, 10) probabilities; row n * T + t: example n, target t
    distinct: int  # T: the bucket's distinct targets (jobs that train on the same ones share them)
    target_columns: torch.Tensor  # (S, width, 1) the t each slot trains on (0 where empty)


def slot_table(
    by_slot: dict[tuple[int, int], torch.Tensor], rows: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct tensors of the slots side by side (dim 1), and (rows, width, 1) the column each slot (s, j)
    reads, 0 where empty: jobs that train on the same labels or targets share one copy of them."""
    distinct = list({id(t): t for t in by_slot.values()}.values())
    column = {id(t): i for i, t in enumerate(distinct)}
    columns = torch.zeros(rows, width, 1, dtype=torch.long, device=distinct[0].device)
    for (s, j), tensor in by_slot.items():
        columns[s, j, 0] = column[id(tensor)]
    return torch.stack(distinct, dim=1), columns


class Stack:
    """The models of a lock-step group as one batched softmax regression.

    Models with the same seed see the same batches, so they sit side by side in one row of the stack:
    weight (S, 10 * J, 784) and bias (S, 10 * J, 1) hold J slots for each of S seeds, class-major (class c of
    slot j is row c * J + j), and a step is one batched matrix product for every model. Each row is laid out
    alike: a block of slots per bucket (loss and kind of target), and within a block the models by optimizer
    and learning rate. A seed with fewer models in a bucket than another leaves slots of its block empty: they
    hold zeros, their loss is computed but belongs to no model, and no optimizer steps them. Model k's
    nn.Linear is a view of its slot's rows, so it always shows the weights as trained.
    """

    def __init__(self, active: list[int], learners: list[Learner]):
        def bucket_of(k: int) -> tuple:
            return learners[k].loss, learners[k].targets.dim()

        def step_key(k: int) -> tuple:
            return learners[k].optimizer, learners[k].lr

        self.seeds = sorted({learners[k].seed for k in active})
        kinds = sorted({bucket_of(k) for k in active})
        blocks = [
            [
                sorted((k for k in active if learners[k].seed == seed and bucket_of(k) == kind), key=step_key)
                for kind in kinds
            ]
            for seed in self.seeds
        ]  # blocks[s][b]: seed s's models of bucket b, in slot order
        self.widths = widths = [max(len(row[b]) for row in blocks) for b in range(len(kinds))]
        starts = list(itertools.accumulate(widths, initial=0))
        self.slot = {
            k: (s, starts[b] + i)
            for s, row in enumerate(blocks)
            for b, block in enumerate(row)
            for i, k in enumerate(block)
        }
        models = [learner.model for learner in learners]
        device = models[active[0]].weight.device
        self.weight = torch.zeros(len(self.seeds), CLASSES * starts[-1], PIXELS, device=device)
        self.bias = torch.zeros(len(self.seeds), CLASSES * starts[-1], 1, device=device)
        for k, (s, j) in self.slot.items():
            weight, bias = self.slots(self.weight, s, j), self.slots(self.bias, s, j)[:, 0]
            weight.copy_(models[k].weight.detach())
            bias.copy_(models[k].bias.detach())
            models[k].weight = nn.Parameter(weight, requires_grad=False)
            models[k].bias = nn.Parameter(bias, requires_grad=False)
        self.weight.requires_grad_()
        self.bias.requires_grad_()
        # Gradients kept in place: backward() adds into them, so the optimizers' views of them stay valid.
        self.weight.grad, self.bias.grad = torch.zeros_like(self.weight), torch.zeros_like(self.bias)
        self.buckets = []
        for b, ((loss, _), width) in enumerate(zip(kinds, widths, strict=True)):
            block_targets = {(s, i): learners[k].targets for s, row in enumerate(blocks) for i, k in enumerate(row[b])}
            table, columns = slot_table(block_targets, len(self.seeds), width)
            self.buckets.append(Bucket(build_loss(loss), width, table.flatten(0, 1), table.shape[1], columns))
        self.optimizers = self.make_optimizers(step_key)
        # Each slot's training labels, for its training accuracy; an empty slot reads column 0 and is ignored.
        slot_labels = {slot: learners[k].labels for k, slot in self.slot.items()}
        self.labels, self.label_columns = slot_table(slot_labels, len(self.seeds), starts[-1])

    @staticmethod
    def slots(tensor: torch.Tensor, seeds: int | slice, slots: int | slice) -> torch.Tensor:
        """The view of the stack's weight or bias (or a gradient of them) that holds these slots of these rows:
        (10, 784) and (10, 1) for one slot of one row, (S', 10, J', 784) and (S', 10, J', 1) for slices."""
        return tensor[seeds].unflatten(-2, (CLASSES, -1))[..., slots, :]

    def make_optimizers(self, step_key: Callable[[int], tuple]) -> list:
        """One optimizer per implementation, with a parameter group per learning rate holding views of the
        stack: one per run of slots that step alike, across every seed's row where the rows agree."""
        runs = defaultdict(list)  # (first slot, last slot + 1, optimizer, lr) -> the rows that have it
        for s in range(len(self.seeds)):
            first = end = key = None  # a run ends where the optimizer or the lr changes, or at an empty slot
            for j, slot_key in sorted((j, step_key(k)) for k, (row, j) in self.slot.items() if row == s):
                if slot_key != key or j != end:
                    if key is not None:
                        runs[(first, end, *key)].append(s)
                    first, key = j, slot_key
                end = j + 1
            runs[(first, end, *key)].append(s)
        groups = defaultdict(lambda: defaultdict(list))  # optimizer -> lr -> views
        for (first, end, name, lr), rows in runs.items():
            for _, consecutive in itertools.groupby(enumerate(rows), key=lambda pair: pair[1] - pair[0]):
                seeds = [s for _, s in consecutive]
                seeds, slots = slice(seeds[0], seeds[-1] + 1), slice(first, end)
                views = [self.slots(leaf.detach(), seeds, slots) for leaf in (self.weight, self.bias)]
                for view, leaf in zip(views, (self.weight, self.bias), strict=True):
                    view.grad = self.slots(leaf.grad, seeds, slots)
                groups[name][lr] += views
        return [
            build_optimizer(name, [{"params": views, "lr": lr} for lr, views in by_lr.items()])
            for name, by_lr in groups.items()
        ]

    def zero_grad(self) -> None:
        # backward() adds into .grad, so last step's gradient must go before the next backward.
        self.weight.grad.zero_()
        self.bias.grad.zero_()

    def release(self, models: list[nn.Linear]) -> None:
        """Give each model its own copy of its rows: a saved model must not carry its neighbours' weights."""
        for k in self.slot:
            models[k].weight = nn.Parameter(models[k].weight.detach().clone())
            models[k].bias = nn.Parameter(models[k].bias.detach().clone())


def train(
    learners: list[Learner],
    lockstep: Lockstep,
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    on_group_epoch: Callable[[int, list[EpochMetrics]], None] | None = None,
    stop: Callable[[int, dict[int, EpochMetrics]], set[int]] | None = None,
) -> list[TrainResult]:
    """Train every learner's model in lock-step, through the data and steps of `lockstep`.

    on_epoch(k, metrics) follows each epoch of learner k, on_group_epoch(epoch, metrics) each epoch of the
    group. A model whose loss is no longer finite stops after that epoch (still reported), with a
    DivergedError in its result. stop(epoch, {k: metrics}) is asked after each epoch which of the models that
    trained on stop there (a search's pruner: halving.py); they leave with `stopped_at` set. Either way, the
    others train on exactly as they would have without them.
    """
    images, test_images, test_labels = lockstep.images, lockstep.test_images, lockstep.test_labels
    val_images, val_labels = lockstep.validation_images, lockstep.validation_labels  # None: nothing held out
    count, batch_size, scale = len(images), lockstep.batch_size, lockstep.pixel_scale
    device = images.device
    results = [TrainResult(learner.model) for learner in learners]
    models = [result.model for result in results]
    # One generator per seed, on the CPU, so every device sees the same order.
    shuffles = {seed: torch.Generator().manual_seed(seed) for seed in sorted({learner.seed for learner in learners})}
    # Batch buffers reused every step: on the CPU a fresh 800 KB tensor per step costs more than the
    # matmul (the allocator maps new pages and faults them in).
    batch_bytes = torch.empty(len(shuffles) * batch_size, images.shape[1], dtype=torch.uint8, device=device)
    batch_pixels = torch.empty(len(shuffles) * batch_size, images.shape[1], device=device)

    active = list(range(len(learners)))
    stack = Stack(active, learners)
    for epoch in range(1, lockstep.epochs + 1):
        start = time.perf_counter()
        # Every seed draws its order, trained or not: a seed's orders never depend on the other jobs.
        drawn = {seed: torch.randperm(count, generator=shuffle) for seed, shuffle in shuffles.items()}
        orders = torch.stack([drawn[seed] for seed in stack.seeds]).to(device)  # (S, N)
        seeds = len(stack.seeds)
        # Kept on the device and reduced once per epoch: reading them every step would cost a sync each.
        step_losses, step_predictions, step_largest = [[] for _ in stack.buckets], [], []
        for step_start in range(0, count, batch_size):
            stack.zero_grad()
            batch = orders[:, step_start : step_start + batch_size]  # (S, B): each seed's examples
            rows = batch.shape[0] * batch.shape[1]
            torch.index_select(images, 0, batch.flatten(), out=batch_bytes[:rows])
            pixels = to_unit_interval(batch_bytes[:rows], out=batch_pixels[:rows], scale=scale)
            if seeds == 1:  # on the CPU torch multiplies plain matrices faster than a batch of one
                logits = torch.addmm(stack.bias[0], stack.weight[0], pixels.t())
            else:
                logits = torch.baddbmm(stack.bias, stack.weight, pixels.view(seeds, -1, PIXELS).transpose(1, 2))
            per_model = logits.view(seeds, CLASSES, -1, batch.shape[1])  # (S, 10, J, B)
            examples = batch.unsqueeze(1)  # (S, 1, B)
            # Each bucket's block of slots as a view; backward() puts their gradients side by side again in
            # one copy, which a single bucket is spared.
            blocks = per_model.split(stack.widths, dim=2) if len(stack.buckets) > 1 else [per_model]
            each_example = []  # per bucket, (S, width, B): every slot's loss on every example of the batch
            for bucket, block, losses in zip(stack.buckets, blocks, step_losses, strict=True):
                # Row n * T + t of the bucket's targets: (S, w, B), each slot's target t for each example n.
                picks = torch.add(bucket.target_columns, examples, alpha=bucket.distinct)
                picked = bucket.targets.index_select(0, picks.flatten())  # (S * w * B) or (S * w * B, 10)
                # Probabilities move their class to dim 1, where the logits have it.
                batch_targets = (
                    picked.view(picks.shape) if picked.dim() == 1 else picked.view(*picks.shape, -1).movedim(3, 1)
                )
                each_example.append(bucket.loss_fn(block, batch_targets))
                losses.append(each_example[-1].detach())
            # d(batch mean)/d(each example's loss) = 1/B: every model gets the gradient of its own batch mean.
            torch.autograd.backward(each_example, [torch.full_like(each, 1 / batch.shape[1]) for each in each_example])
            for optimizer in stack.optimizers:
                optimizer.step()
            step_predictions.append(per_model.detach().max(dim=1).indices)  # (S, J, B); max's indices: argmax
            step_largest.append(per_model.detach().abs().amax(dim=3))  # (S, 10, J): max |z| over the batch

        # Each slot's mean loss over the epoch's examples, bucket by bucket, then side by side: (S, J).
        losses = torch.cat([torch.cat(steps, dim=2).sum(dim=2) for steps in step_losses], dim=1) / count
        seen_labels = stack.labels[orders.unsqueeze(1), stack.label_columns]  # (S, J, N)
        correct = (torch.cat(step_predictions, dim=2) == seen_labels).sum(dim=2)  # (S, J)
        # NaN logits only follow weights gone NaN: they are not a size, so they are left out.
        largest = torch.stack(step_largest).nan_to_num(nan=0.0, posinf=math.inf).amax(dim=(0, 2))  # (S, J)
        members = list(stack.slot)
        trained_models = [models[k] for k in members]
        test_predictions, test_correct = evaluate.correct(trained_models, test_images, test_labels, scale)
        val_correct = None if val_images is None else evaluate.correct(trained_models, val_images, val_labels, scale)[1]
        train_loss, train_correct = losses.tolist(), correct.tolist()
        test_correct, largest = test_correct.tolist(), largest.tolist()  # one sync for the whole group
        val_correct = None if val_correct is None else val_correct.tolist()
        seconds = time.perf_counter() - start

        trained, diverged = {}, []
        for column, k in enumerate(members):
            s, j = stack.slot[k]
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss[s][j],
                train_acc=train_correct[s][j] / count,
                test_acc=test_correct[column] / len(test_labels),
                epoch_seconds=seconds,
                max_abs_logit=largest[s][j],
                val_acc=None if val_correct is None else val_correct[column] / len(val_labels),
            )
            results[k].history.append(metrics)  # the failing epoch too: it shows where the logits went
            results[k].test_predictions = test_predictions[:, column]
            if on_epoch is not None:
                on_epoch(k, metrics)
            if math.isfinite(metrics.train_loss):
                trained[k] = metrics
                continue
            cause = f" with lr={learners[k].lr}; lower the learning rate (0.1 is the textbook value)"
            if learners[k].loss == "naive":
                cause = f", from {naive_failure(metrics.max_abs_logit)}"
            results[k].error = DivergedError(
                f"training diverged at epoch {epoch}: train_loss={metrics.train_loss}{cause}"
            )
            diverged.append(k)
        if on_group_epoch is not None and trained:
            on_group_epoch(epoch, list(trained.values()))
        stopped = stop(epoch, trained) if stop is not None and trained else set()
        for k in stopped:
            results[k].stopped_at = epoch
        if diverged or stopped:
            active = [k for k in active if k not in diverged and k not in stopped]
            stack.release(models)
            if not active:
                return results
            stack = Stack(active, learners)
    stack.release(models)
    return results
