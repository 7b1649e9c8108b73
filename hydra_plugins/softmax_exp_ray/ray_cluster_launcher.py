"""Hydra's Ray launcher (hydra-ray-launcher), with one change: Ctrl-C on the launching process stops the sweep.

    python -m softmax_exp -m hydra/launcher=ray_cluster lr=0.01,0.1    # conf/hydra/launcher/ray_cluster.yaml

The plugin's own launcher waits on its tasks one by one and keeps their references to itself, so a Ctrl-C
leaves them running on the cluster until Ray notices the driver is gone and kills their workers, in whatever
state their runs are in. This one cancels the tasks instead: a job not yet started never starts, and a
running job gets a KeyboardInterrupt on its worker, so it ends its own run KILLED, as Ctrl-C does anywhere.
The launcher waits for that before it goes on to end the sweep's parent run KILLED (softmax_exp.main).

Hydra imports this module when it looks for plugins, at every start: Ray and the plugin are imported only
when a sweep is launched, and only where the `cluster` extra is installed.
"""

import logging

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import DictConfig, open_dict

from hydra_plugins.softmax_exp_launch.sweep_launcher import SweepLauncher

log = logging.getLogger(__name__)

CANCEL_SECONDS = 60  # for the cancelled jobs to end their runs; those it cannot reach are ended by the launcher


class RayClusterLauncher(SweepLauncher):
    def __init__(self, ray: DictConfig) -> None:
        super().__init__()
        self.ray_cfg = ray  # the plugin's schema: ray.init and ray.remote

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        """As the plugin's launch: each job's config built here, and run on Ray by the plugin's own task."""
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray

        sweep_dir = self.start_sweep()
        log.info(f"Ray Launcher is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
        start_ray(self.ray_cfg.init)
        tasks = []
        try:
            for num, overrides in enumerate(job_overrides, initial_job_idx):
                log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
                config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                with open_dict(config):
                    config.hydra.job.id = f"job_id_for_{num}"  # the scheduler's job id: none on Ray
                    config.hydra.job.num = num
                state = Singleton.get_state()
                tasks.append(
                    launch_job_on_ray(self.hydra_context, self.ray_cfg.remote, config, self.task_function, state)
                )
            return ray.get(tasks)
        except KeyboardInterrupt:
            log.info(f"Ctrl-C: cancelling the sweep's {len(tasks)} Ray tasks")
            for task in tasks:
                ray.cancel(task)  # a KeyboardInterrupt in each running job; those not started never start
            ray.wait(tasks, num_returns=len(tasks), timeout=CANCEL_SECONDS)
            raise
