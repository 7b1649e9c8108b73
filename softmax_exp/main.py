"""The entry point: `python -m softmax_exp [overrides]`, one job per Hydra run or multirun job."""

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import to_absolute_path
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from softmax_exp import data, tracking
from softmax_exp.config import PROJECT_ROOT, resolve_device, validate
from softmax_exp.errors import SoftmaxExpError
from softmax_exp.train import train

log = logging.getLogger(__name__)


def run_job(cfg: DictConfig, job: tracking.JobInfo) -> dict:
    """Train and track one configured job; returns its final metrics."""
    validate(cfg)
    device = resolve_device(cfg.device)
    with tracking.job_run(cfg, job, device) as run:
        fashion_mnist = data.load(to_absolute_path(cfg.data.root))
        result = train(cfg, fashion_mnist, on_epoch=run.log_epoch)
        run.log_result(result, fashion_mnist.test)
    return {"status": "FINISHED", **result.final}


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict:
    hydra_cfg = HydraConfig.get()
    job = tracking.JobInfo(list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
    try:
        return run_job(cfg, job)
    except SoftmaxExpError as error:
        log.error(f"error: {error}")
        if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweep goes on; its callback reports the failures
            return {"status": "FAILED", "error": str(error)}
        sys.exit(1)


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so `kill` ends runs as KILLED, like Ctrl-C


def cli() -> None:
    signal.signal(signal.SIGTERM, interrupt)
    status = RunStatus.FAILED
    try:
        main()
        status = RunStatus.FINISHED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        sys.exit(130)
    finally:
        tracking.end_open_runs(RunStatus.to_string(status))
