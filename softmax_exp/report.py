"""`python -m softmax_exp.report`: a sweep summed up, best first: on validation accuracy where its jobs held
images out (data.validation), else on test accuracy (summary.chosen_on).

With seeds as replicates: one row per configuration (mean ± 95% CI, n) and the contrasts; without, or
with --jobs, one row per job: the summary the sweep's parent run holds (summary.py), printed. Reads the
tracking store named in conf/ (or --uri), and only reads it: a store that is not there is said, not made.
Shows the latest sweep unless one is named.
"""

import argparse
import sys

import pandas as pd
from hydra import compose, initialize_config_dir
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from softmax_exp import replicates, run_keys, store, summary
from softmax_exp.errors import SoftmaxExpError
from softmax_exp.schema import PROJECT_ROOT


def default_tracking() -> tuple[str, str]:
    """The store and experiment that `python -m softmax_exp` writes to, read from conf/."""
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "conf")):
        cfg = compose("config")
    return cfg.tracking.uri, cfg.tracking.experiment


def read(uri: str, experiment: str, name: str | None) -> tuple[Run, summary.SweepSummary] | None:
    """The sweep and its summary, from a store checked and opened only to read; None when there is no such
    sweep. What MLflow fails on is said in one line, as TrackingError."""
    store.check_for_reading(uri, experiment)
    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return None
        store.check_not_deleted(found)
        sweep = find_sweep(client, found.experiment_id, name)
        return None if sweep is None else (sweep, summary.summarize(client, sweep.info.run_id))
    except MlflowException as error:
        raise store.failed(uri, error) from None


def find_sweep(client: MlflowClient, experiment_id: str, sweep: str | None) -> Run | None:
    """The latest sweep (parent run), or the one whose run id or run name is `sweep`."""
    query = f"tags.`{run_keys.SWEEP_TAG}` = 'true'"
    if sweep is not None:
        if len(sweep) == 32 and sweep.isalnum():  # an MLflow run id
            return client.get_run(sweep)
        query += f" and attributes.run_name = {store.quoted(sweep)}"
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def format_table(sweep: summary.SweepSummary) -> str:
    def cell(column: str, value) -> str:
        if value is None:
            return "-"
        if column in run_keys.FINAL_KEYS:
            return f"{value:.4f}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    header, *rows = sweep.table()
    return aligned(
        [header] + [[cell(column, value) for column, value in zip(header, row, strict=True)] for row in rows]
    )


def format_groups(groups: pd.DataFrame) -> str:
    """A row per configuration: n finished (and failed), then per metric its mean ± the CI's half width."""
    metrics = replicates.VALIDATED_METRICS if "val_acc_mean" in groups else replicates.METRICS
    header = ["configuration", "n", "failed", *(f"{metric} (mean ± 95% CI)" for metric in metrics)]
    lines = [header]
    for row in groups.to_dict("records"):
        cells = [row["group"], str(row["n"]), str(row["failed"])]
        lines.append(cells + [mean_ci(row, metric) for metric in metrics])
    return aligned(lines)


def mean_ci(row: dict, metric: str) -> str:
    """A configuration's `mean ± half the 95% CI's width`; the mean alone for one seed, `-` for none finished."""
    mean, high = row[f"{metric}_mean"], row[f"{metric}_ci95_high"]
    return "-" if pd.isna(mean) else f"{mean:.4f} ± {high - mean:.4f}" if pd.notna(high) else f"{mean:.4f}"


def aligned(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softmax_exp.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", help="sweep run name (e.g. experiment=grid) or run id; default: latest")
    parser.add_argument("--experiment", help="MLflow experiment (default: tracking.experiment in conf/)")
    parser.add_argument("--uri", help="tracking store (default: tracking.uri in conf/)")
    parser.add_argument("--jobs", action="store_true", help="one row per job, not per configuration")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    uri, experiment = default_tracking()
    uri, experiment = args.uri or uri, args.experiment or experiment
    try:
        found = read(uri, experiment, args.sweep)
    except SoftmaxExpError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if found is None:
        named = f" {args.sweep!r}" if args.sweep else ""
        print(f"no sweep{named} in experiment {experiment!r} of {store.redacted(uri)}: run one with "
              "`python -m softmax_exp -m experiment=grid`", file=sys.stderr)  # fmt: skip
        return 1
    run, sweep = found
    print(f"sweep {run.info.run_name} ({run.info.run_id}), {store.redacted(uri)}")
    if args.jobs or not sweep.has_replicates:
        print(format_table(sweep))
        if not args.jobs:
            print("n = 1 for every configuration (one seed each): sweep seed=0,1,2,3,4 for confidence intervals")
    else:
        print(format_replicates(sweep.groups, sweep.contrasts))
    if sweep.chosen_on != "test_acc" and sweep.finished:  # a sweep without a validation set prints as it always did
        print(sweep.best_config_line() if sweep.has_replicates and not args.jobs else sweep.best_job_line())
    return 0


def format_replicates(groups: pd.DataFrame, contrasts: pd.DataFrame) -> str:
    """A sweep with seeds as replicates: a row per configuration, then the contrasts."""
    lines = [format_groups(groups)]
    if not contrasts.empty:
        lines += ["", "contrasts (paired over runs that differ only in that choice, final test_acc):"]
        lines += [f"  {replicates.describe(contrast)}" for contrast in contrasts.to_dict("records")]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
