"""How a job finds its sweep's parent run: in the tracking store, by the sweep's folder.

Every launcher gives each job its sweep's folder (hydra.sweep.dir), whether the job runs in the launching
process, in a worker process, on a Ray worker or on a SLURM node; environment variables reach only some of
these. So the parent run carries the folder in a tag, and a job looks the parent up by it.
"""

from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from softmax_exp import store

SWEEP_DIR_TAG = "sweep_dir"  # only parent runs carry it


def sweep_dir_tag(sweep_dir: str | Path) -> dict[str, str]:
    """The tag that names a parent run's sweep folder, absolute, written the way every job of the sweep writes it
    (a relative hydra.sweep.dir is relative to the launching process's folder: jobs make it absolute with that)."""
    return {SWEEP_DIR_TAG: str(Path(str(sweep_dir)).absolute())}


def sweep_parent(
    client: MlflowClient, experiment_id: str, sweep_dir: str | Path, status: str | None = None
) -> Run | None:
    """The newest parent run of the sweep in `sweep_dir` (in this status, if given); None if it has none."""
    query = f"tags.{SWEEP_DIR_TAG} = {store.quoted(sweep_dir_tag(sweep_dir)[SWEEP_DIR_TAG])}"
    if status is not None:
        query += f" and attributes.status = '{status}'"
    runs = client.search_runs([experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"])
    return runs[0] if runs else None


def parent_run_id(client: MlflowClient, experiment_id: str, sweep_dir: str | Path | None) -> str | None:
    """The open parent run of the sweep in `sweep_dir`; None for a job of no sweep, or of a sweep without our
    callback. The newest wins when an earlier sweep wrote into the same folder."""
    if sweep_dir is None:
        return None
    parent = sweep_parent(client, experiment_id, sweep_dir, status="RUNNING")
    return parent.info.run_id if parent else None
