"""A Hydra callback that makes each multirun one MLflow parent run, with the jobs nested under it.

Hydra calls it in the launching process: the parent is created once, before any job, and after the last
one, however the jobs were launched, it writes the sweep's summary (summary.py): the per-job table and best
job, and with seeds as replicates (replicates.py) the per-configuration means with confidence intervals,
the contrasts and their plots.
"""

import json
import logging
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from softmax_exp import (
    disk,
    interrupts,
    job,
    links,
    nesting,
    plots,
    replicates,
    resume,
    run_keys,
    store,
    study,
    summary,
    telemetry,
    tracking,
)
from softmax_exp.config import unknown_key_message, unknown_keys
from softmax_exp.errors import ConfigError, SoftmaxExpError

log = logging.getLogger(__name__)


def sweep_overrides(config: DictConfig) -> dict[str, str]:
    """What the sweep varies or sets: the sweeper's params (named experiments) and the command line's."""
    params = {str(key): str(value) for key, value in (config.hydra.sweeper.params or {}).items()}
    for override in config.hydra.overrides.task:
        key, _, value = override.partition("=")
        params[key.lstrip("+~")] = store.redacted(value) if key.endswith("tracking.uri") else value
    return params


def sweep_name(config: DictConfig) -> str:
    experiment = config.hydra.runtime.choices.get("experiment")
    if experiment not in (None, "null"):
        return f"experiment={experiment}"
    return " ".join(job.choices(list(config.hydra.overrides.task))) or "sweep"


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None
        self.experiment_id: str | None = None

    # Hydra turns an exception raised in a callback into a warning and carries on, so these log the one
    # clear message themselves and end the process with sys.exit, which Hydra lets through.

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        uri = config.tracking.uri
        resuming = resume.resuming(config)
        try:
            if unknown := unknown_keys(config):  # a `+typo=value` set for every job
                raise ConfigError(unknown_key_message(unknown[0]))
            if resuming:
                resume.check_same_sweep(config)
            telemetry.apply(config.tracking.telemetry)
            experiment = self.experiment_id = tracking.experiment_id(uri, config.tracking.experiment)
            client = MlflowClient(uri)
            if resuming:
                self.parent_run_id = resume.reopen(client, experiment, config.hydra.sweep.dir)
        except SoftmaxExpError as error:
            log.error(f"error: {error}")
            sys.exit(1)  # before any job starts
        with interrupts.whole():  # the parent run is made and known to end_open_runs, or not made at all
            if not resuming:
                run = client.create_run(
                    experiment,
                    run_name=sweep_name(config),
                    tags={
                        run_keys.SWEEP_TAG: "true",
                        **nesting.sweep_dir_tag(config.hydra.sweep.dir),
                        **tracking.git_tags(),
                    },
                )
                self.parent_run_id = run.info.run_id
                client.log_batch(self.parent_run_id, params=[Param(k, v) for k, v in sweep_overrides(config).items()])
            tracking.open_runs[self.parent_run_id] = uri
        how = "resumed" if resuming else "started"
        log.info(f"MLflow sweep run {sweep_name(config)!r} ({self.parent_run_id}) {how} in {store.redacted(uri)}")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self.sum_up(config)
        except Exception as error:  # a full disk said in one line; the parent ends FAILED as the process exits
            full = disk.said(error, config.tracking.uri, Path(config.hydra.sweep.dir), "hydra.sweep.dir")
            if full is None:
                raise
            log.error(f"error: {full}")
            sys.exit(1)

    def sum_up(self, config: DictConfig) -> None:
        """The jobs' table, the best job and configuration, the plots; then the parent run ends FINISHED."""
        client = MlflowClient(config.tracking.uri)
        self.end_orphans(client)
        sweep = summary.summarize(client, self.parent_run_id)
        client.log_metric(self.parent_run_id, "jobs_failed", len(sweep.failed))
        client.log_text(self.parent_run_id, tracking.csv_text(sweep.table()), "sweep_results.csv")
        if sweep.finished:
            self.log_best_job(client, sweep)
            self.log_groups(client, sweep)
        if study.is_search(config):
            self.log_search(client, config, sweep)
        client.set_terminated(self.parent_run_id, RunStatus.to_string(RunStatus.FINISHED))
        tracking.open_runs.pop(self.parent_run_id, None)
        log.info(f"sweep's runs: {links.where_to_look(config.tracking.uri, self.experiment_id)}")
        if sweep.failed:
            names = "; ".join(row["run_name"] for row in sweep.failed)
            log.error(f"error: {len(sweep.failed)} of {len(sweep.jobs)} jobs failed ({names}); each job's log says why")
            sys.exit(1)

    def log_search(self, client: MlflowClient, config: DictConfig, sweep: summary.SweepSummary) -> None:
        """A search's study: its best trial (chosen on validation accuracy) with its parameters and its test
        accuracy beside, the table of every trial, and the optimisation history."""
        found = study.load(config)
        trials = study.trial_table(found) if found is not None else None
        if trials is None or not (trials["state"] == "COMPLETE").any():
            return
        run_id, best = self.parent_run_id, found.best_trial
        test_acc = statistics.fmean(row["test_acc"] for row in sweep.finished if row["trial"] == best.number)
        client.set_tag(run_id, "best_trial", str(best.number))
        client.set_tag(run_id, "best_trial_params", json.dumps(best.params))
        client.log_metric(run_id, "best_trial_val_acc", best.value)
        client.log_metric(run_id, "best_trial_test_acc", test_acc)
        client.log_text(run_id, trials.to_csv(index=False), "trials.csv")
        client.log_figure(run_id, plots.optimization_history(trials), "optimization_history.png")
        log.info(
            f"best trial: #{best.number} {best.params}  val_acc={best.value:.4f} (chosen on it), "
            f"test_acc={test_acc:.4f}; {len(trials)} trials, {int((trials['state'] == 'PRUNED').sum())} pruned"
        )

    def end_orphans(self, client: MlflowClient) -> None:
        """Every job has ended, so a run still RUNNING lost its process (killed, out of memory): FAILED."""
        running = f"tags.mlflow.parentRunId = '{self.parent_run_id}' and attributes.status = 'RUNNING'"
        for run in client.search_runs([self.experiment_id], running, max_results=10_000):
            client.set_tag(run.info.run_id, "error", "its process died before the job ended (killed, or out of memory)")
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))

    def log_best_job(self, client: MlflowClient, sweep: summary.SweepSummary) -> None:
        run_id, best = self.parent_run_id, sweep.best_job
        client.set_tag(run_id, "best_job", best["run_name"])
        for key in run_keys.FINAL_KEYS:
            if best[key] is not None:  # val_acc, without a validation set
                client.log_metric(run_id, f"best_{key}", best[key])
        client.log_metric(run_id, "best_lr", best["lr"])
        log.info(sweep.best_job_line())

    def log_groups(self, client: MlflowClient, sweep: summary.SweepSummary) -> None:
        """Per configuration (its jobs less the seed): n, mean, spread and 95% CI; the best by mean accuracy
        (summary.chosen_on); the contrasts; and the plots with error bars and bands over seeds."""
        run_id = self.parent_run_id
        curves = summary.group_curves(client, sweep)
        # A panel per configuration takes a second or more to draw: another core draws them meanwhile.
        with plots.drawing(workers=1) as draw:
            curves_png = draw(plots.png_of, [plots.group_learning_curves], [curves])  # next() waits for it
            client.log_text(run_id, sweep.groups.to_csv(index=False), "sweep_groups.csv")
            client.log_text(run_id, sweep.contrasts.to_csv(index=False), "contrasts.csv")
            best = sweep.best_config
            client.set_tag(run_id, "best_config", best["group"])
            metrics = {"best_config_n": best["n"]}
            for metric in sweep.reported:
                for statistic in ("mean", "ci95_low", "ci95_high"):
                    metrics[f"best_config_{metric}_{statistic}"] = best[f"{metric}_{statistic}"]
            for key, value in metrics.items():
                if not math.isnan(value):  # one seed: no interval
                    client.log_metric(run_id, key, value)
            client.log_figure(run_id, plots.accuracy_vs_lr(sweep.groups), "test_acc_vs_lr.png")
            tracking.log_files(client, run_id, {"learning_curves_by_group.png": next(curves_png)})
        if sweep.has_replicates:
            log.info(sweep.best_config_line())
            for contrast in sweep.contrasts.to_dict("records"):
                log.info(f"contrast: {replicates.describe(contrast)}")
