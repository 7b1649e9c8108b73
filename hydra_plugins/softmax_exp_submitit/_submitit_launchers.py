"""softmax_exp's submitit launchers: a sweep's jobs as submitit jobs (on SLURM, one job array), whose Ctrl-C
on the launching process cancels them.

    python -m softmax_exp -m hydra/launcher=slurm lr=0.01,0.1         # conf/hydra/launcher/slurm.yaml
    python -m softmax_exp -m hydra/launcher=slurm_local lr=0.01,0.1   # the same path, each job a process here

Written on submitit's public API (AutoExecutor, Executor.submit_array, Job.results, Job.cancel) and Hydra's
(run_job, through softmax_exp_launch's SweepJob). The configs are those of Hydra's submitit plugin
(`submitit_slurm`, `submitit_local`: its schema, keys and defaults), each key handed to submitit as the plugin
documents it. Its own launcher waits for the jobs' results, and Ctrl-C, or SIGTERM, which softmax_exp turns
into Ctrl-C, ended that wait but not the jobs: on SLURM they went on until someone ran `scancel`, ending the
runs the launcher had just ended KILLED. This one cancels every job it submitted (Job.cancel: `scancel` on
SLURM; on this machine SIGINT, then SIGKILL a second later), waits for them to end, and lets the interrupt go
on, so that the launcher ends every run still open KILLED (softmax_exp.main).

Private (a leading underscore), so that Hydra's plugin scan does not import it where the plugin whose configs
it takes is missing: __init__.py imports it where the plugin is installed. submitit itself is imported only
once a sweep is launched: the scan imports this module at every start.
"""

import logging
import time
from dataclasses import fields
from typing import Any

from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from hydra_plugins.softmax_exp_launch.sweep_job import SweepJob
from hydra_plugins.softmax_exp_launch.sweep_launcher import SweepLauncher

log = logging.getLogger(__name__)

CANCEL_SECONDS = 60  # for the cancelled jobs to end; the runs of those still going are ended by the launcher
SHARED_KEYS = {field.name for field in fields(BaseQueueConf)}  # the keys every submitit executor takes unprefixed


class SubmititJob:
    """A sweep's job as submitit runs it: with the scheduler's job id as hydra.job.id, and, as a callable with
    a checkpoint() (submitit's Checkpointable protocol), requeued to start over when SLURM preempts it or it
    times out with max_num_timeout > 0."""

    def __init__(self, job: SweepJob) -> None:
        self.job = job

    def __call__(self) -> JobReturn:
        import submitit

        return self.job(job_id=submitit.JobEnvironment().job_id)

    def checkpoint(self) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class SubmititLauncher(SweepLauncher):
    cluster: str  # submitit's executor: "slurm" or "local"

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = {  # the config's keys, as plain values for submitit
            key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for key, value in params.items()
        }

    def executor(self) -> Any:
        """A submitit executor with the config's parameters: those every executor takes as they are, the
        others prefixed with the executor's name, as submitit asks."""
        import submitit

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        init = {f"{self.cluster}_max_num_timeout": params.pop("max_num_timeout")} if "max_num_timeout" in params else {}
        executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster, **init)
        executor.update_parameters(**{k if k in SHARED_KEYS else f"{self.cluster}_{k}": v for k, v in params.items()})
        return executor

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        sweep_dir = self.start_sweep()
        log.info(f"Submitit '{self.cluster}' sweep output dir : {sweep_dir}")
        sweep_jobs = self.sweep_jobs(job_overrides, initial_job_idx)
        jobs = self.executor().submit_array([SubmititJob(job) for job in sweep_jobs])  # on SLURM, one job array
        for sweep_job, job in zip(sweep_jobs, jobs, strict=True):
            log.info(f"\t#{sweep_job.num} : {' '.join(filter_overrides(sweep_job.overrides))} (job {job.job_id})")
        try:
            return [job.results()[0] for job in jobs]
        except KeyboardInterrupt:
            log.info(f"Ctrl-C: cancelling the sweep's {len(jobs)} submitit jobs")
            for job in jobs:
                job.cancel(check=False)  # one that already ended is no error
            deadline = time.monotonic() + CANCEL_SECONDS
            while not all(job.done() for job in jobs) and time.monotonic() < deadline:
                time.sleep(0.5)  # polling the jobs' states: submitit has nothing to wait on
            raise


class LocalLauncher(SubmititLauncher):
    cluster = "local"


class SlurmLauncher(SubmititLauncher):
    cluster = "slurm"
