"""The start every softmax_exp launcher shares with Hydra's own: what setup() is given, kept; and before the
jobs, Hydra's globals, its logging, and the sweep's folder. For a launcher that runs its jobs in other
processes, the jobs made to travel there (sweep_job.py)."""

import os
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.softmax_exp_launch.sweep_job import SweepJob


class SweepLauncher(Launcher):
    """A launcher still to write its launch(), which calls start_sweep() first."""

    def __init__(self) -> None:
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def start_sweep(self) -> Path:
        """As Hydra's basic launcher starts a sweep; the sweep's folder, created."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return sweep_dir

    def sweep_jobs(self, job_overrides, initial_job_idx: int) -> list[SweepJob]:
        """The sweep's jobs, each to run in a process of its own."""
        state, cwd = Singleton.get_state(), os.getcwd()
        return [
            SweepJob(num, list(overrides), self.hydra_context, self.config, cwd, self.task_function, state)
            for num, overrides in enumerate(job_overrides, initial_job_idx)
        ]
