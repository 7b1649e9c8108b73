"""Hydra's config loader, composing a whole batch of job configs at once, on every core, and keeping each one
until the launcher that runs the batch in this process takes it.

Before launching, Hydra's sweeper composes every job's config only to check that it composes
(Sweeper.validate_batch_is_legal: "This repeat work the launcher will do, but as the launcher may be
performing this in a different process/machine it's important to do it here as well"). The vectorized
launcher runs the jobs in the sweeper's own process, so it takes those configs rather than composing each
one twice. Composing is Hydra's own work in Python, about 90 ms a job on one core: this process composes
the first part of a batch while forked ones compose the rest (softmax_exp.forked).
"""

import os
from collections import defaultdict

from omegaconf import DictConfig

from softmax_exp import forked

# Jobs per process at the least: a forked one takes 20-30 ms to start, and gains 90 ms a job it composes.
JOBS_PER_PROCESS = 4


def compose_each(loader, master_config: DictConfig, batch: list[list[str]]) -> list[DictConfig]:
    return [loader.load_sweep_config(master_config, list(overrides)) for overrides in batch]


def compose_forked(batch: list[list[str]]) -> list[DictConfig]:
    """In a forked worker, with the loader and master config it was forked with."""
    loader, master_config = forked.given
    return compose_each(loader, master_config, batch)


class ComposedConfigs:
    def __init__(self, loader) -> None:
        self.loader = loader
        self.composed = defaultdict(list)  # a job's overrides -> its configs composed and not yet taken

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        config = self.loader.load_sweep_config(master_config, sweep_overrides)
        self.composed[tuple(sweep_overrides)].append(config)
        return config

    def compose(self, master_config: DictConfig, batch: list[list[str]]) -> None:
        """Every config of the batch, kept; a job whose config does not compose raises its error, the first such
        job's, as composing them one by one would."""
        processes = max(1, min(len(os.sched_getaffinity(0)), len(batch) // JOBS_PER_PROCESS))
        size = -(-len(batch) // processes)  # jobs per process, rounded up
        parts = [batch[start : start + size] for start in range(0, len(batch), size)]
        if len(parts) == 1:
            configs = compose_each(self.loader, master_config, batch)
        else:
            with forked.workers(len(parts) - 1, context=(self.loader, master_config)) as pool:
                others = [pool.submit(compose_forked, part) for part in parts[1:]]
                configs = compose_each(self.loader, master_config, parts[0])
                for part, other in zip(parts[1:], others, strict=True):
                    try:
                        configs += other.result()
                    except Exception:  # composed here again: a job's error then comes with its cause, Hydra's message
                        configs += compose_each(self.loader, master_config, part)
        for overrides, config in zip(batch, configs, strict=True):
            self.composed[tuple(overrides)].append(config)

    def take(self, master_config: DictConfig, overrides: list[str]) -> DictConfig:
        """The job's config: the one the sweeper composed, else composed now."""
        if kept := self.composed.get(tuple(overrides)):
            return kept.pop(0)
        return self.loader.load_sweep_config(master_config, overrides)

    def __getattr__(self, name: str):  # all else is the loader's own
        return getattr(self.loader, name)
