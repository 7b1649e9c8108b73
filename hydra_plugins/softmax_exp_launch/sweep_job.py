"""One job of a sweep, made to run in another process (a worker, a submitit job) as Hydra's basic launcher
runs its jobs, on Hydra's public API: its config composed there, then hydra.core.utils.run_job (its folder,
`.hydra/` files, log, callbacks, JobReturn)."""

from dataclasses import dataclass
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict


@dataclass
class SweepJob:
    """Pickled with cloudpickle, which pickles the task function by value: Hydra's task is the function
    @hydra.main decorated, which plain pickle cannot find by its name."""

    num: int
    overrides: list[str]
    hydra_context: HydraContext
    config: DictConfig  # the sweep's: the job's own is composed where it runs, as Hydra's plugins do
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
        return run_job(
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
            hydra_context=self.hydra_context,
        )
