"""Successive halving in lock-step (Jamieson & Talwalkar 2016; Li et al. 2018), for a search's trials.

At each rung epoch, the group's search trials are ranked on their validation accuracy (the mean over a
trial's seeds), and all but the best `keep` fraction (1/eta) stop there: their models leave the stack, and
every later step is cheaper. In lock-step every trial reaches a rung at the same moment, so, unlike
asynchronous halving (ASHA), nothing waits. Jobs that are no trial of a search (pruning.trial=null) never stop.
"""

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from omegaconf import DictConfig

from softmax_exp.train import EpochMetrics


@dataclass(frozen=True)
class Halving:
    trials: dict[int, int]  # learner -> the search trial it is one seed of
    rungs: frozenset[int]  # epochs after which the trials are ranked
    keep: float  # the fraction of the trials ranked at a rung that go on: 1/eta

    def __call__(self, epoch: int, metrics: dict[int, EpochMetrics]) -> set[int]:
        """The learners that stop after this epoch: every seed of the trials ranked below the kept fraction."""
        if epoch not in self.rungs:
            return set()
        accuracies = defaultdict(list)
        for k, epoch_metrics in metrics.items():
            if k in self.trials:
                accuracies[self.trials[k]].append(epoch_metrics.val_acc)
        scores = {trial: statistics.fmean(values) for trial, values in accuracies.items()}
        ranked = sorted(scores, key=lambda trial: (-scores[trial], trial))  # ties: the earlier trial goes on
        kept = set(ranked[: max(1, math.ceil(len(ranked) * self.keep))])
        return {k for k in metrics if k in self.trials and self.trials[k] not in kept}


def halving(cfgs: list[DictConfig]) -> Halving | None:
    """The pruner of a lock-step group's search trials, as their pruning.* keys say; None where nothing prunes."""
    trials = {k: cfg.pruning.trial for k, cfg in enumerate(cfgs) if cfg.pruning.trial is not None and cfg.pruning.rungs}
    if not trials:
        return None
    first = cfgs[next(iter(trials))].pruning
    return Halving(trials, frozenset(first.rungs), first.keep)
