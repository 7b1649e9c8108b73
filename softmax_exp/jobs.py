"""Running jobs: each job checked, prepared, trained and tracked in an MLflow run of its own.

Jobs that can step together (same data, batch size, epochs and device) are trained as one lock-step
group. A single run is a list of one job; the vectorized launcher hands over a whole sweep. Whatever
goes wrong with one job (a value that makes no sense, a teacher that cannot be loaded, a loss that
diverges) fails that job alone.
"""

import logging
import os
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict
from itertools import repeat

import torch
from hydra.utils import to_absolute_path

from softmax_exp import data, evaluate, inputs, plots, threads, tracking
from softmax_exp.config import resolve_device, validate
from softmax_exp.errors import ConfigError, SoftmaxExpError
from softmax_exp.halving import halving
from softmax_exp.job import Job
from softmax_exp.prepare import Preparation, PreparedJob, lockstep, lockstep_key
from softmax_exp.train import EpochMetrics, Lockstep, TrainResult, train

log = logging.getLogger(__name__)


def finished(result: TrainResult) -> dict:
    """A job trained to its last epoch: FINISHED; or stopped by its search's pruner: PRUNED, which is no failure."""
    if result.stopped_at is not None:
        return {"status": "PRUNED", "pruned_at_epoch": result.stopped_at, **result.final}
    return {"status": "FINISHED", **result.final}


def failed(job: Job, error: SoftmaxExpError) -> dict:
    job.log.error(f"error: {error}")
    return {"status": "FAILED", "error": str(error), "error_type": type(error).__name__}


def run_jobs(jobs: list[Job]) -> list[dict]:
    """Run every job; returns each one's final metrics, or its failure, in the order given."""
    results: list[dict | None] = [None] * len(jobs)
    groups = defaultdict(list)
    for i, job in enumerate(jobs):
        try:
            validate(job.cfg)
            device = resolve_device(job.cfg.device)
            groups[lockstep_key(job.cfg, device), device].append(i)
        except ConfigError as error:
            results[i] = refuse(job, error)
    for (_, device), members in groups.items():
        try:
            outcomes = run_group([jobs[i] for i in members], device)
        except SoftmaxExpError as error:  # the data or the store, shared by the whole group
            outcomes = [failed(jobs[i], error) for i in members]
        for i, outcome in zip(members, outcomes, strict=True):
            results[i] = outcome
    return results


def refuse(job: Job, error: ConfigError) -> dict:
    """A job whose values make no sense: a single run stops before anything is tracked, while a sweep's
    job leaves a FAILED run that says why, next to its siblings."""
    if job.sweep_dir is not None:
        with tracking.job_runs([job], device=str(job.cfg.device)) as (run,):
            run.end(error)
    return failed(job, error)


def run_group(jobs: list[Job], device: torch.device) -> list[dict]:
    """Train jobs that can step together, each prepared on its own and tracked in its own run, as one group."""
    first = jobs[0].cfg
    threads.use([job.cfg for job in jobs], device)
    with tracking.job_runs(jobs, str(device)) as runs:
        fashion_mnist = data.load(to_absolute_path(first.data.root))
        group = lockstep(first, fashion_mnist, device)
        prepared, outcomes = prepare_each(jobs, runs, group, fashion_mnist)
        members = list(prepared)  # learner i of the trainer is job members[i] of the group

        def on_epoch(i: int, metrics: EpochMetrics) -> None:
            jobs[members[i]].log.info(metrics.line())
            runs[members[i]].log_epoch(metrics)

        on_group_epoch = report_group_epoch if len(members) > 1 else None  # a single run's own lines say it all
        learners = [prepared[k].learner for k in members]
        pruner = halving([jobs[k].cfg for k in members])
        trained = train(learners, group, on_epoch, on_group_epoch, pruner) if members else []
        results = dict(zip(members, trained, strict=True))
        for k, result in results.items():
            if result.error is not None:
                runs[k].end(result.error)
                outcomes[k] = failed(jobs[k], result.error)
            elif result.stopped_at is not None:
                # A search's pruned trial: its final metrics alone. Its model is never the one chosen, and a model
                # and figures cost a job about as much CPU as its training.
                runs[k].log_finals(result, prepared[k])
                runs[k].end()
                outcomes[k] = finished(result)
        trained_through = [k for k in results if k not in outcomes]
        for k in log_results(trained_through, runs, results, prepared, fashion_mnist.test):
            outcomes[k] = finished(results[k])
    return [outcomes[k] for k in range(len(jobs))]


def prepare_each(
    jobs: list[Job], runs: list[tracking.JobRun], group: Lockstep, fashion_mnist: data.FashionMNIST
) -> tuple[dict[int, PreparedJob], dict[int, dict]]:
    """Each job's data as its run records it, and its learner; a job that cannot be prepared ends alone, FAILED."""
    prepare, prepared, outcomes = Preparation(group, fashion_mnist.test), {}, {}
    for k, (run, job) in enumerate(zip(runs, jobs, strict=True)):
        run.log_inputs(inputs.dataset_inputs(fashion_mnist, job.cfg))
        try:
            prepared[k] = prepare(job.cfg)
        except SoftmaxExpError as error:  # this job's own (its teacher): its neighbours train without it
            run.end(error)
            outcomes[k] = failed(job, error)
    return prepared, outcomes


def log_results(
    members: list[int], runs: list[tracking.JobRun], results: dict, prepared: dict, test: data.Split
) -> Iterator[int]:
    """Each trained job's results, figures and model written to its run, which then ends FINISHED: as soon as its
    figures are drawn (by other cores, for a group). Yields each job as it ends."""
    confusions = {k: evaluate.confusion_counts(results[k].test_predictions, test.labels) for k in members}
    workers = min(len(members), os.cpu_count() or 1) if len(members) > 1 else 0  # one job's: drawn here
    with plots.drawing(workers) as draw:
        histories = [[asdict(m) for m in results[k].history] for k in members]
        figures = draw(plots.job_figures, histories, [confusions[k] for k in members], repeat(data.CLASSES))
        for k, job_figures in zip(members, figures, strict=True):
            runs[k].log_result(results[k], prepared[k], confusions[k], job_figures)
            runs[k].end()
            yield k


def report_group_epoch(epoch: int, metrics: list[EpochMetrics]) -> None:
    """One line per epoch for a group of jobs; each job's own lines go to its log and its run."""
    accuracies = [m.test_acc for m in metrics]
    log.info(
        f"epoch {epoch:>3}  jobs training={len(metrics)}  test_acc lowest={min(accuracies):.4f} "
        f"median={statistics.median(accuracies):.4f} highest={max(accuracies):.4f}  "
        f"seconds={metrics[0].epoch_seconds:.3f}"
    )
