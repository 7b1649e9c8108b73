"""softmax_exp's grid sweeper, the suite's default: Hydra's basic sweep (the cartesian product of the comma
lists, in batches of max_batch_size), which can also resume an interrupted sweep.

    python -m softmax_exp -m experiment=grid epochs=6                      # killed halfway (kill -9, Ctrl-C, OOM)
    python -m softmax_exp -m experiment=grid epochs=6 hydra.sweep.dir=DIR hydra.sweeper.resume=true

A resume skips every job whose numbers stand (softmax_exp.resume) and launches the rest, numbered after the
sweep's job folders, as one batch like any other: the vectorized launcher trains them as one lock-step group.

Written on Hydra's public plugin API (hydra.plugins.sweeper, its override parser): Hydra's own basic sweeper
lives in its private modules. Hydra imports this module when it looks for plugins, at every start: MLflow
and torch are imported only when a sweep resumes.
"""

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import OmegaConf

from hydra_plugins.softmax_exp_sweep.launching_sweeper import LaunchingSweeper

log = logging.getLogger(__name__)


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.softmax_exp_sweep.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once; null: all of them
    params: dict[str, str] | None = None  # what to sweep, as on the command line: {lr: "0.01,0.1", seed: "range(5)"}
    resume: bool = False  # continue the sweep in hydra.sweep.dir: run only the jobs whose numbers do not stand
    retry_failed: bool = False  # with resume: also run again the jobs that FAILED for their own reason


ConfigStore.instance().store(group="hydra/sweeper", name="grid", node=GridSweeperConf)


def grid(overrides: list[Override]) -> list[list[str]]:
    """The product of each key's values: a list or range(...) sweeps, a plain value is every job's."""
    axes = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            axes[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            axes[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise HydraException(f"{key}: hydra/sweeper=grid sweeps lists and ranges, not {override.value_type.name}")
    return [list(job) for job in itertools.product(*axes.values())]


class GridSweeper(LaunchingSweeper):
    def __init__(self, max_batch_size: int | None, params: dict | None, resume: bool, retry_failed: bool) -> None:
        super().__init__()
        if max_batch_size is not None and max_batch_size < 1:
            raise HydraException(f"hydra.sweeper.max_batch_size={max_batch_size}: must be at least 1, or null")
        self.max_batch_size, self.params = max_batch_size, dict(params or {})
        self.resume, self.retry_failed = resume, retry_failed

    def grid(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides: the params' first, the command line's winning."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        return grid(parser.parse_overrides([f"{key}={value}" for key, value in self.params.items()] + arguments))

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        jobs, first = self.grid(arguments), 0
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        if self.resume:  # the sweep's callback checked that this is the sweep in sweep_dir, and reopened it
            jobs, first = self.jobs_to_resume(jobs, sweep_dir)
        else:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        size = self.max_batch_size or max(len(jobs), 1)
        returns = []
        for start in range(0, len(jobs), size):
            batch = jobs[start : start + size]
            self.validate_batch_is_legal(batch)
            returns.append(self.launcher.launch(batch, initial_job_idx=first + start))
        return returns

    def jobs_to_resume(self, jobs: list[list[str]], sweep_dir: Path) -> tuple[list[list[str]], int]:
        """The jobs whose numbers do not stand, and the number of the first."""
        from mlflow.tracking import MlflowClient

        from softmax_exp import nesting, resume, tracking
        from softmax_exp.job import choices

        uri = self.config.tracking.uri
        client = MlflowClient(uri)
        experiment = tracking.experiment_id(uri, self.config.tracking.experiment)
        parent = nesting.parent_run_id(client, experiment, sweep_dir)
        standing = resume.standing(client, parent, self.retry_failed)
        todo = [job for job in jobs if tuple(choices(job)) not in standing]
        if todo:
            log.info(f"resume: {len(jobs) - len(todo)} of {len(jobs)} jobs stand; running the other {len(todo)}")
        else:
            log.info(f"resume: all {len(jobs)} jobs of {sweep_dir} stand (FINISHED, or FAILED for their own reason): "
                     "nothing to run; hydra.sweeper.retry_failed=true runs the failed ones again")  # fmt: skip
        return todo, resume.next_job_number(sweep_dir)
