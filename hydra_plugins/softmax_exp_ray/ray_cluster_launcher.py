"""softmax_exp's Ray launcher: each job of a sweep is one Ray task on a cluster, and Ctrl-C stops the sweep.

    python -m softmax_exp -m hydra/launcher=ray_cluster lr=0.01,0.1    # conf/hydra/launcher/ray_cluster.yaml

Each job runs on a Ray worker as Hydra's own launchers run one (softmax_exp_launch's SweepJob: the launching
process's Hydra state, then hydra.core.utils.run_job), so it gets its folder, `.hydra/` files, log and
callbacks as anywhere. Only Ray's public API is used: ray.init, ray.remote, ray.get, ray.cancel, ray.wait.

Hydra's Ray plugin (`hydra/launcher=ray`) waits on its tasks one by one and keeps their references to itself,
so a Ctrl-C leaves them running on the cluster until Ray notices the driver is gone and kills their workers,
in whatever state their runs are in. This one cancels the tasks instead: a job not yet started never starts,
and a running job gets a KeyboardInterrupt on its worker, so it ends its own run KILLED, as Ctrl-C does
anywhere, again until it does (`cancel`). The launcher waits for that before it goes on to end the sweep's
parent run KILLED (softmax_exp.main).

It joins the cluster with Ray's token authentication unless RAY_AUTH_MODE says otherwise, and a cluster it
cannot join (not running, or refusing its token) is said in one line (docs/clusters-ray.md).

Hydra imports this module when it looks for plugins, at every start: Ray is imported only when a sweep is
launched, and only where the `cluster` extra is installed.
"""

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, filter_overrides
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.softmax_exp_launch.stopping import stop_all
from hydra_plugins.softmax_exp_launch.sweep_job import SweepJob
from hydra_plugins.softmax_exp_launch.sweep_launcher import SweepLauncher

log = logging.getLogger(__name__)

AUTH_MODE = "RAY_AUTH_MODE"  # Ray's: token or disabled, read once, as Ray is imported
HOW_TO = "docs/clusters-ray.md"
PROBE_SECONDS = 10  # for a cluster's port to answer


@dataclass
class RayConf:
    init: dict[str, Any] = field(default_factory=lambda: {"address": "auto"})  # ray.init's arguments
    remote: dict[str, Any] = field(default_factory=dict)  # ray.remote's options for each job's task


@dataclass
class RayClusterLauncherConf:
    _target_: str = "hydra_plugins.softmax_exp_ray.ray_cluster_launcher.RayClusterLauncher"
    ray: RayConf = field(default_factory=RayConf)


# The schema conf/hydra/launcher/ray_cluster.yaml extends; not named ray_cluster, or Hydra would match the file
# to it by name (a deprecated automatic schema, with a warning at every sweep).
ConfigStore.instance().store(group="hydra/launcher", name="base_ray_cluster", node=RayClusterLauncherConf)


def run_on_worker(job: SweepJob) -> JobReturn:
    return job()


def joined_ray(init: DictConfig):
    """The ray module, this process joined to the cluster that ray.init's arguments name (once per process)."""
    os.environ.setdefault(AUTH_MODE, "token")  # before Ray is imported: it reads the mode then
    import ray
    from ray.exceptions import AuthenticationError

    from softmax_exp.errors import ClusterError  # imported here: Hydra's plugin scan imports this module in any app

    if ray.is_initialized():
        return ray
    arguments = OmegaConf.to_container(init, resolve=True)
    log.info(f"Joining Ray: ray.init({', '.join(f'{key}={value!r}' for key, value in arguments.items())})")
    check_answers(arguments.get("address"))
    try:
        ray.init(**arguments)
    except (ConnectionError, AuthenticationError) as error:
        raise ClusterError(cannot_join(error, arguments.get("address"))) from None
    return ray


def check_answers(address: str | None) -> None:
    """A HOST:PORT address that nothing answers at, said at once: Ray would retry for minutes (over 5 here)."""
    from softmax_exp.errors import ClusterError

    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not (host and port.isdigit()):
        return  # auto, or a new instance: Ray finds it, or says it found none
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
    except OSError as error:
        raise ClusterError(
            f"no Ray cluster answers at {address} ({error.strerror or error}): start one there ({HOW_TO}) "
            "or set hydra.launcher.ray.init.address"
        ) from None


def cannot_join(error: Exception, address: str | None) -> str:
    """Why this process could not join the cluster at `address`, and what to do, in one line."""
    from ray.exceptions import AuthenticationError

    cluster, mode = f"the Ray cluster at {address}", os.environ[AUTH_MODE]
    token = "~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (`ray get-auth-token` on the head prints it)"
    if isinstance(error, AuthenticationError):  # raised before connecting: token mode, no token
        return (
            f"cannot join {cluster}: {AUTH_MODE}={mode} and no token on this machine: put the cluster's token in "
            f"{token}; for a cluster started with {AUTH_MODE}=disabled, set {AUTH_MODE}=disabled here too ({HOW_TO})"
        )
    if refused(error) and mode == "token":
        return f"{cluster} refused this process's token: put the cluster's token in {token} ({HOW_TO})"
    if refused(error):
        return (
            f"{cluster} asks for a token and {AUTH_MODE}={mode} here: unset {AUTH_MODE} (ray_cluster then joins "
            f"with token authentication) and put the cluster's token in {token} ({HOW_TO})"
        )
    # Refusals through the head's client server (ray://) reach here too, as a timeout once its port answered.
    reason = str(error).strip().splitlines()[0]
    return (
        f"cannot join {cluster}: {reason}: check that it runs there (or set hydra.launcher.ray.init.address) and "
        f"that this process has its token ({AUTH_MODE}={mode} here; the token in {token}) ({HOW_TO})"
    )


def refused(error: BaseException | None) -> bool:
    """Whether the cluster refused the token: Ray retries for about 20 s, then raises a ConnectionError whose
    cause, a RuntimeError, names the refusal (InvalidAuthToken) only in its text."""
    while error is not None:
        if "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


class RayClusterLauncher(SweepLauncher):
    def __init__(self, ray: DictConfig) -> None:
        super().__init__()
        self.ray_cfg = ray  # ray.init's arguments and ray.remote's options

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        """As Hydra's basic launcher: each job's config built here, each job run as one Ray task."""
        sweep_dir = self.start_sweep()
        log.info(f"Ray Launcher is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
        ray = joined_ray(self.ray_cfg.init)
        job_task = ray.remote(run_on_worker).options(**OmegaConf.to_container(self.ray_cfg.remote, resolve=True))
        tasks = []
        try:
            for job in self.sweep_jobs(job_overrides, initial_job_idx):
                log.info(f"\t#{job.num} : {' '.join(filter_overrides(job.overrides))}")
                tasks.append(job_task.remote(job))
            return ray.get(tasks)
        except KeyboardInterrupt:
            log.info(f"Ctrl-C: cancelling the sweep's {len(tasks)} Ray tasks")
            cancel(ray, tasks)
            raise


def cancel(ray, tasks: list) -> None:
    """Every task of the sweep cancelled: a KeyboardInterrupt in each running job, delivered by Ray as a
    simulated Ctrl-C, and again while it runs on (softmax_exp_launch.stopping); those not started never start.
    One still running in the end is killed with its worker."""

    def still_running(running: list, seconds: float) -> list:
        return ray.wait(running, num_returns=len(running), timeout=seconds)[1]

    stop_all(tasks, ray.cancel, still_running, lambda task: ray.cancel(task, force=True))
