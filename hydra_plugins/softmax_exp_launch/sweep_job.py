"""One job of a sweep, made to run in another process (a worker, a submitit job) as Hydra's basic launcher
runs its jobs, on Hydra's public API: its config composed there, then hydra.core.utils.run_job (its folder,
`.hydra/` files, log, callbacks, JobReturn)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write


@dataclass
class SweepJob:
    """Pickled with cloudpickle, which pickles the task function by value: Hydra's task is the function
    @hydra.main decorated, which plain pickle cannot find by its name."""

    num: int
    overrides: list[str]
    hydra_context: HydraContext
    config: DictConfig  # the sweep's: the job's own is composed where it runs, as Hydra's plugins do
    cwd: str  # the launching process's folder: a worker may run in another (a Ray worker, in `ray start`'s)
    task_function: TaskFunction
    singleton_state: dict[str, Any]  # Hydra's globals in the launching process (Singleton.get_state())

    def __call__(self, job_id: str | None = None) -> JobReturn:
        """Runs the job here; job_id: the scheduler's id for it, if it has one (else the job's number)."""
        Singleton.set_state(self.singleton_state)
        setup_globals()
        config = self.hydra_context.config_loader.load_sweep_config(self.config, self.overrides)
        with open_dict(config):
            config.hydra.job.id = self.num if job_id is None else job_id
            config.hydra.job.num = self.num
            config.hydra.sweep.dir = str(Path(self.cwd, config.hydra.sweep.dir))  # where the launcher made it
        with read_write(config.hydra.runtime):
            config.hydra.runtime.cwd = self.cwd  # hydra.utils.get_original_cwd(), as where the sweep was launched
        return run_job(
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
            hydra_context=self.hydra_context,
        )
