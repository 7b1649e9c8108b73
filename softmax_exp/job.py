"""A job: one configuration to train, with what Hydra knows of it. Built here, and only here, for a single run
(softmax_exp.main) and for each job of the vectorized launcher alike."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from hydra.types import RunMode
from omegaconf import DictConfig

# The sweep's name, where data and runs live, and how a search prunes its trials (their trial number is a tag).
NOT_CHOICES = ("experiment=", "tracking.", "data.root=", "pruning.")


def choices(overrides: list[str]) -> list[str]:
    """The overrides that change the experiment, less where data and runs live and the sweep's name."""
    return [o for o in overrides if not o.lstrip("+~").startswith(NOT_CHOICES)]


@dataclass
class Job:
    cfg: DictConfig  # the job's composed config, without Hydra's node
    overrides: list[str] = field(default_factory=list)  # the job's own, as Hydra got them
    output_dir: Path | None = None  # its folder: .hydra/ and its log; None without Hydra (tests, notebooks)
    sweep_dir: Path | None = None  # the sweep's folder, when the job is one of a sweep's
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("softmax_exp.job"))  # the job's own lines

    @classmethod
    def of(cls, cfg: DictConfig, hydra: DictConfig, log: logging.Logger | None = None) -> "Job":
        """The job that Hydra composed: `hydra` is its config's `hydra` node (HydraConfig.get() in the job)."""
        in_sweep = hydra.mode == RunMode.MULTIRUN
        return cls(
            cfg=cfg,
            overrides=list(hydra.overrides.task),
            output_dir=Path(hydra.runtime.output_dir),
            # hydra.sweep.dir is relative to the launching process's folder (hydra.runtime.cwd), wherever the job runs
            sweep_dir=Path(hydra.runtime.cwd, hydra.sweep.dir) if in_sweep else None,
            **({"log": log} if log is not None else {}),
        )

    @property
    def choices(self) -> list[str]:
        """Its overrides less where data and runs live: what makes it one job of its sweep, and no other."""
        return choices(self.overrides)

    @property
    def name(self) -> str:
        """The job's choices, e.g. `loss=scratch,labels=soft,lr=0.05`: its run's name."""
        return ",".join(self.choices) or "defaults"

    @property
    def group(self) -> str:
        """Its configuration less the seed, e.g. `loss=scratch,labels=soft`: the jobs that replicate it."""
        return ",".join(o for o in self.choices if o.lstrip("+~").partition("=")[0] != "seed") or "defaults"
