"""The entry point: `python -m softmax_exp [overrides]`, one job per Hydra run or multirun job."""

import signal
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from softmax_exp import interrupts, telemetry, tracking
from softmax_exp.job import Job
from softmax_exp.jobs import run_jobs
from softmax_exp.schema import PROJECT_ROOT


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict:
    """One job, as Hydra's own launchers run them: a list of one for jobs.run_jobs."""
    # Where a launcher runs the job in a process of its own (Ray's worker, submitit's): Ctrl-C only, as a launcher
    # that stops its workers with SIGTERM (parallel) means to end them outright.
    interrupts.install(signal.SIGINT)
    telemetry.apply(cfg.tracking.telemetry)
    job = Job.of(cfg, HydraConfig.get())
    (result,) = run_jobs([job])
    if result["status"] != "FINISHED" and job.sweep_dir is None:  # a sweep goes on; its callback reports failures
        sys.exit(1)
    return result


def cli() -> None:
    interrupts.install(signal.SIGINT, signal.SIGTERM)
    status = RunStatus.FAILED
    try:
        main()
        status = RunStatus.FINISHED
    except KeyboardInterrupt:
        status = RunStatus.KILLED
        sys.exit(130)
    finally:
        tracking.end_open_runs(RunStatus.to_string(status))
