"""Hydra's submitit launchers (hydra-submitit-launcher), with one change: Ctrl-C on the launching process
cancels the sweep's jobs.

    python -m softmax_exp -m hydra/launcher=slurm lr=0.01,0.1         # conf/hydra/launcher/slurm.yaml
    python -m softmax_exp -m hydra/launcher=slurm_local lr=0.01,0.1   # the same path, each job a process here

The plugin's launcher submits the jobs (on SLURM, one job array) and waits for their results. Ctrl-C, or
SIGTERM, which softmax_exp turns into Ctrl-C, ends that wait but not the jobs: on SLURM they went on until
someone ran `scancel`, ending the runs the launcher had just ended KILLED. This one cancels every job it
submitted (submitit's Job.cancel: `scancel` on SLURM; on this machine SIGINT, then SIGKILL a second later),
waits for them to end, and lets the interrupt go on, so that the launcher ends every run still open KILLED
(softmax_exp.main).

Private (a leading underscore), so that Hydra's plugin scan does not import it where the plugin it extends
is missing: __init__.py imports it where the plugin is installed.
"""

import logging
import os
import time
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

CANCEL_SECONDS = 60  # for the cancelled jobs to end; the runs of those still going are ended by the launcher


class CancellingLauncher(submitit_launcher.BaseSubmititLauncher):
    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        jobs = self.submit(job_overrides, initial_job_idx)
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

    def submit(self, job_overrides, initial_job_idx: int) -> list:
        """The plugin's launch (1.2.0) up to its wait: the jobs, submitted."""
        import submitit

        init_keys = {"submitit_folder", "max_num_timeout"}
        init_params = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init_params[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k not in init_keys}
        )
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for num, overrides in enumerate(job_overrides, initial_job_idx):
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state()))
        return executor.map_array(self, *zip(*job_params, strict=True))


class LocalLauncher(CancellingLauncher):
    _EXECUTOR = "local"


class SlurmLauncher(CancellingLauncher):
    _EXECUTOR = "slurm"
