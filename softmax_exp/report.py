"""`python -m softmax_exp.report`: a sweep summed up, best test accuracy first.

With seeds as replicates: one row per configuration (mean ± 95% CI, n) and the contrasts; without, or
with --jobs, one row per job. Reads the tracking store named in conf/ (or --uri); shows the latest sweep
unless one is named.
"""

import argparse
import sys

import pandas as pd
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from softmax_exp import replicates, tracking
from softmax_exp.config import PROJECT_ROOT
from softmax_exp.sweep import TABLE_COLUMNS, job_table


def default_tracking() -> tuple[str, str]:
    """The store and experiment that `python -m softmax_exp` writes to, read from conf/."""
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "conf")):
        cfg = compose("config")
    return cfg.tracking.uri, cfg.tracking.experiment


def find_sweep(client: MlflowClient, experiment_id: str, sweep: str | None):
    """The latest sweep (parent run), or the one whose run id or run name is `sweep`."""
    query = f"tags.`{tracking.SWEEP_TAG}` = 'true'"
    if sweep is not None:
        query += f" and attributes.run_name = '{sweep}'"
        if len(sweep) == 32 and sweep.isalnum():  # an MLflow run id
            return client.get_run(sweep)
    runs = client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def format_table(rows: list[dict]) -> str:
    def cell(column: str, value) -> str:
        if value is None:
            return "-"
        if column in tracking.FINAL_KEYS:
            return f"{value:.4f}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return aligned([list(TABLE_COLUMNS)] + [[cell(column, row[column]) for column in TABLE_COLUMNS] for row in rows])


def format_groups(groups: pd.DataFrame) -> str:
    """A row per configuration: n finished (and failed), then per metric its mean ± the CI's half width."""
    header = ["configuration", "n", "failed", *(f"{metric} (mean ± 95% CI)" for metric in replicates.METRICS)]
    lines = [header]
    for row in groups.to_dict("records"):
        cells = [row["group"], str(row["n"]), str(row["failed"])]
        lines.append(cells + [mean_ci(row, metric) for metric in replicates.METRICS])
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
    tracking.check_reachable(uri)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    sweep = find_sweep(client, found.experiment_id, args.sweep) if found else None
    if sweep is None:
        named = f" {args.sweep!r}" if args.sweep else ""
        print(f"no sweep{named} in experiment {experiment!r} of {uri}: run one with "
              "`python -m softmax_exp -m experiment=grid`", file=sys.stderr)  # fmt: skip
        return 1
    print(f"sweep {sweep.info.run_name} ({sweep.info.run_id}), {uri}")
    rows = job_table(client, sweep.info.run_id)
    groups = replicates.group_summary(pd.DataFrame(rows)) if rows else None
    if args.jobs or groups is None or not replicates.has_replicates(groups):
        print(format_table(rows))
        if not args.jobs:
            print("n = 1 for every configuration (one seed each): sweep seed=0,1,2,3,4 for confidence intervals")
        return 0
    print(format_groups(groups))
    contrasts = replicates.contrasts(pd.DataFrame(rows))
    if not contrasts.empty:
        print("\ncontrasts (paired over runs that differ only in that choice, final test_acc):")
        for contrast in contrasts.to_dict("records"):
            print(f"  {replicates.describe(contrast)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
