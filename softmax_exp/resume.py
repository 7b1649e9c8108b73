"""Resuming an interrupted sweep: the same command again, with `hydra.sweep.dir=<its folder>` and
`hydra.sweeper.resume=true`.

The sweep's folder holds what was asked (Hydra's multirun.yaml, written as the sweep started) and the store
holds what became of each job: its run under the sweep's parent run, named by its choices (run_keys.JOB_TAG).
A resume refuses another sweep, reopens the parent, ends as KILLED the runs a killed process left RUNNING, and
runs again every job whose numbers do not stand. A FINISHED job stands; so does one that FAILED for its own
reason (a bad value, a divergence: it would fail again), unless hydra.sweeper.retry_failed=true.
"""

import json
import logging
from pathlib import Path

from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from softmax_exp import nesting, store, study
from softmax_exp.errors import ConfigError
from softmax_exp.run_keys import JOB_TAG, OWN_FAILURE_TAG

log = logging.getLogger(__name__)

ASKED = "multirun.yaml"  # Hydra's record of the sweep, in its folder


def resuming(config: DictConfig) -> bool:
    """Whether this sweep goes on with the one in its folder: hydra.sweeper.resume=true, or a search
    (hydra/sweeper=search) run again in its folder, which continues its study."""
    if config.hydra.sweeper.get("resume", False):
        return True
    return study.is_search(config) and (Path(str(config.hydra.sweep.dir)) / ASKED).is_file()


def asked(config: DictConfig) -> dict[str, str]:
    """What a sweep asks for: its sweeper's params, then the command line's overrides (which win, as in a sweep)."""
    params = {str(key): str(value) for key, value in (config.hydra.sweeper.get("params") or {}).items()}
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        params[key] = value
    return params


def check_same_sweep(config: DictConfig) -> None:
    """Refuse, in one line, a resume of a folder that holds no sweep, or of a sweep that asked for other jobs."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    record = sweep_dir / ASKED
    if not record.is_file():
        raise ConfigError(
            f"hydra.sweeper.resume=true, but {sweep_dir} holds no sweep ({ASKED} is missing): give the interrupted "
            "sweep's folder as hydra.sweep.dir"
        )
    before, now = asked(OmegaConf.load(record)), asked(config)
    if before != now:
        changes = [
            f"{key}={before[key] if key in before else '(unset)'} -> {now[key] if key in now else '(unset)'}"
            for key in sorted(before.keys() | now.keys())
            if before.get(key) != now.get(key)
        ]
        raise ConfigError(
            f"hydra.sweeper.resume=true, but the sweep in {sweep_dir} asked for other jobs ({'; '.join(changes)}): "
            "resume it with its own overrides, or start a new sweep in another hydra.sweep.dir"
        )


def reopen(client: MlflowClient, experiment_id: str, sweep_dir: str | Path) -> str:
    """The sweep's parent run, RUNNING again; the runs of its jobs that a killed process left RUNNING, KILLED."""
    parent = nesting.sweep_parent(client, experiment_id, sweep_dir)
    if parent is None:
        raise ConfigError(
            f"hydra.sweeper.resume=true, but the tracking store {store.redacted(client.tracking_uri)} holds no sweep "
            f"run of {sweep_dir}: give the tracking.uri and tracking.experiment the sweep wrote to"
        )
    client.update_run(parent.info.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    left = client.search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}' and attributes.status = 'RUNNING'",
        max_results=10_000,
    )
    for run in left:
        client.set_tag(run.info.run_id, "error", "its process was killed before the job ended; run again by a resume")
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
    if left:
        log.info(f"resume: {len(left)} runs that a killed process left RUNNING are now KILLED, and run again")
    return parent.info.run_id


def standing(client: MlflowClient, parent_run_id: str, retry_failed: bool) -> set[tuple[str, ...]]:
    """The sweep's jobs whose numbers stand, FINISHED or FAILED for their own reason, by their choices (job.choices)."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=10_000
    )
    jobs = set()
    for run in runs:
        own_failure = run.info.status == "FAILED" and OWN_FAILURE_TAG in run.data.tags and not retry_failed
        if JOB_TAG in run.data.tags and (run.info.status == "FINISHED" or own_failure):
            jobs.add(tuple(json.loads(run.data.tags[JOB_TAG])))
    return jobs


def next_job_number(sweep_dir: str | Path) -> int:
    """The number after the highest job folder (hydra.sweep.subdir is the job's number), so nothing is overwritten."""
    numbers = [int(folder.name) for folder in Path(str(sweep_dir)).iterdir() if folder.name.isdigit()]
    return max(numbers, default=-1) + 1
