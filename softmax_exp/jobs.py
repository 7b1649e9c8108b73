"""Running jobs: each configured job checked, trained and tracked in an MLflow run of its own.

Jobs that can step together (same data, batch size, epochs and device) are trained as one lock-step
group. A single run is a list of one job; the vectorized launcher hands over a whole sweep. Whatever
goes wrong with one job (a value that makes no sense, a loss that diverges) fails that job alone.
"""

import logging
import os
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from itertools import repeat

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from softmax_exp import data, evaluate, inputs, plots, threads, tracking
from softmax_exp.config import resolve_device, validate
from softmax_exp.errors import ConfigError, SoftmaxExpError
from softmax_exp.train import EpochMetrics, lockstep_key, train

log = logging.getLogger(__name__)


@dataclass
class Job:
    cfg: DictConfig  # the job's composed config
    info: tracking.JobInfo  # what Hydra knows about it: overrides, folders, its log


def finished(metrics: dict) -> dict:
    return {"status": "FINISHED", **metrics}


def failed(job: Job, error: SoftmaxExpError) -> dict:
    job.info.log.error(f"error: {error}")
    return {"status": "FAILED", "error": str(error)}


def run_jobs(jobs: list[Job]) -> list[dict]:
    """Run every job; returns each one's final metrics, or its failure, in the order given."""
    results: list[dict | None] = [None] * len(jobs)
    groups = defaultdict(list)
    for i, job in enumerate(jobs):
        try:
            validate(job.cfg)
            groups[lockstep_key(job.cfg)].append(i)
        except ConfigError as error:
            results[i] = refuse(job, error)
    for members in groups.values():
        try:
            outcomes = run_group([jobs[i] for i in members])
        except SoftmaxExpError as error:  # the data or the store, shared by the whole group
            outcomes = [failed(jobs[i], error) for i in members]
        for i, outcome in zip(members, outcomes, strict=True):
            results[i] = outcome
    return results


def refuse(job: Job, error: ConfigError) -> dict:
    """A job whose values make no sense: a single run stops before anything is tracked, while a sweep's
    job leaves a FAILED run that says why, next to its siblings."""
    if job.info.sweep_dir is not None:
        with tracking.job_runs([(job.cfg, job.info)], device=str(job.cfg.device)) as (run,):
            run.end(error)
    return failed(job, error)


def run_group(jobs: list[Job]) -> list[dict]:
    """Train jobs that can step together, each tracked in its own run, as one lock-step group."""
    device = resolve_device(jobs[0].cfg.device)
    threads.use([job.cfg for job in jobs], device)
    with tracking.job_runs([(job.cfg, job.info) for job in jobs], str(device)) as runs:
        fashion_mnist = data.load(to_absolute_path(jobs[0].cfg.data.root))
        for run, job in zip(runs, jobs, strict=True):
            run.log_inputs(inputs.dataset_inputs(fashion_mnist, job.cfg))

        def on_epoch(k: int, metrics: EpochMetrics) -> None:
            jobs[k].info.log.info(metrics.line())
            runs[k].log_epoch(metrics)

        on_group_epoch = report_group_epoch if len(jobs) > 1 else None  # a single run's own lines say it all
        results = train([job.cfg for job in jobs], fashion_mnist, on_epoch, on_group_epoch)

        outcomes = {}
        for k, result in enumerate(results):
            if result.error is not None:
                runs[k].end(result.error)
                outcomes[k] = failed(jobs[k], result.error)
        trained = [k for k, result in enumerate(results) if result.error is None]
        test = fashion_mnist.test
        confusions = {k: evaluate.confusion_counts(results[k].test_predictions, test.labels) for k in trained}
        workers = min(len(trained), os.cpu_count() or 1) if len(trained) > 1 else 0  # one job's: drawn here
        with plots.drawing(workers) as draw:
            histories = [[asdict(m) for m in results[k].history] for k in trained]
            figures = draw(plots.job_figures, histories, [confusions[k] for k in trained], repeat(data.CLASSES))
            for k, job_figures in zip(trained, figures, strict=True):  # each job as soon as its figures are drawn
                runs[k].log_result(results[k], confusions[k], job_figures)
                runs[k].end()
                outcomes[k] = finished(results[k].final)
    return [outcomes[k] for k in range(len(jobs))]


def report_group_epoch(epoch: int, metrics: list[EpochMetrics]) -> None:
    """One line per epoch for a group of jobs; each job's own lines go to its log and its run."""
    accuracies = [m.test_acc for m in metrics]
    log.info(
        f"epoch {epoch:>3}  jobs training={len(metrics)}  test_acc lowest={min(accuracies):.4f} "
        f"median={statistics.median(accuracies):.4f} highest={max(accuracies):.4f}  "
        f"seconds={metrics[0].epoch_seconds:.3f}"
    )
