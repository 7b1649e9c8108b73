"""The entry point: `python -m softmax_exp [overrides]`, one job per Hydra run or multirun job."""

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.entities import RunStatus
from omegaconf import DictConfig

from softmax_exp import telemetry, tracking
from softmax_exp.config import PROJECT_ROOT
from softmax_exp.jobs import Job, run_jobs


@hydra.main(version_base="1.3", config_path=str(PROJECT_ROOT / "conf"), config_name="config")
def main(cfg: DictConfig) -> dict:
    """One job, as Hydra's own launchers run them: a list of one for jobs.run_jobs."""
    telemetry.apply(cfg.tracking.telemetry)
    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    job = tracking.JobInfo(
        overrides=list(hydra_cfg.overrides.task),
        output_dir=Path(hydra_cfg.runtime.output_dir),
        sweep_dir=Path(hydra_cfg.sweep.dir) if in_sweep else None,
    )
    (result,) = run_jobs([Job(cfg, job)])
    if result["status"] != "FINISHED" and not in_sweep:  # a sweep goes on; its callback reports the failures
        sys.exit(1)
    return result


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
