"""`python -m softmax_exp.results` (scripts/results.sh): every published result, regenerated from nothing.

Runs the default run, the teacher that `experiment=distill` learns from, then the named experiments of
conf/experiment/, into a tracking store of its own; then writes results.md and its figures from the stored
runs, through the code that sums up a sweep (summary.job_table, replicates) and prints it (report): no number
typed by hand.

    python -m softmax_exp.results                  # full scale into docs/: tens of minutes on 2 cores
    python -m softmax_exp.results --quick --out DIR   # fewer epochs, images and seeds: a few minutes
    python -m softmax_exp.results --from-store URI --out DIR   # write again from runs already stored

The README and the other docs quote results.md between `<!-- results.md -->` and `<!-- /results.md -->`
lines; `unconfirmed` lists every quoted line that results.md does not hold (tests/test_results.py).
"""

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from softmax_exp import replicates, report
from softmax_exp.schema import PROJECT_ROOT
from softmax_exp.summary import job_table

# The named experiments, in the order results.md gives them; tests/test_results.py checks that it names
# every file of conf/experiment/. Distill comes after label_noise, whose ε = 0, p = 0 jobs are its hard labels.
EXPERIMENTS = ("grid", "lr_sweep", "overflow", "label_noise", "distill", "search")
EXPECTED_TO_FAIL = {"overflow"}  # its loss=naive job fails on purpose: the sweep exits 1
DEFAULT_RUN = "tracking.experiment=default_run"  # `python -m softmax_exp` alone, in an experiment of its own
TEACHERS = "tracking.experiment=teachers"
TEACHER = ("epochs=50", TEACHERS)  # 5x the students' epochs
QUICK = ("epochs=2", "data.limit=2000")  # and 2 seeds where an experiment sweeps them
QUICK_TEACHER = ("epochs=10", "data.limit=2000", TEACHERS)
QUICK_SEEDS = "seed=0,1"
QUICK_SEARCH = ("hydra.sweeper.n_trials=8", "hydra.sweeper.batch=4", "hydra.sweeper.rungs=[1]")  # rungs < epochs
OPEN = "<!-- results.md -->"  # a quotation of results.md in another page opens with this line
CLOSE = "<!-- /results.md -->"
NOT_SHOWN = ("tracking.uri", "experiment", "hydra.")  # where runs go, and the sweep's name: not the recipe


# --- running the experiments ---------------------------------------------------------------------------------


def sweeper_params(experiment: str) -> dict[str, str]:
    """What a named experiment sweeps, as conf/experiment/ says."""
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "conf")):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    return {str(key): str(value) for key, value in cfg.hydra.sweeper.params.items()}


def scale(experiment: str, quick: bool) -> list[str]:
    if not quick:
        return []
    if experiment == "search":
        return [*QUICK, *QUICK_SEARCH]
    return [*QUICK, *([QUICK_SEEDS] if "seed" in sweeper_params(experiment) else [])]


def softmax_exp(store: Path, folder: str, *args: str) -> int:
    """`python -m softmax_exp ARGS`, its runs in `store`, its output on this terminal."""
    where = [f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.run.dir={store}/{folder}"]
    where.append(f"hydra.sweep.dir={store}/{folder}")
    print(f"results: python -m softmax_exp {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "softmax_exp", *args, *where], cwd=PROJECT_ROOT).returncode


def run_all(store: Path, quick: bool) -> None:
    """The default run, the teacher, then every named experiment, into `store` (a new folder)."""
    if softmax_exp(store, "default_run", *(QUICK if quick else ()), DEFAULT_RUN) != 0:
        sys.exit("results: the default run failed (its output is above)")
    if softmax_exp(store, "teacher", *(QUICK_TEACHER if quick else TEACHER)) != 0:
        sys.exit("results: the teacher's run failed (its output is above)")
    teacher = teacher_uri(MlflowClient(f"sqlite:///{store}/mlflow.db"))
    for experiment in EXPERIMENTS:
        extra = [f"labels.teacher={teacher}"] if experiment == "distill" else []
        status = softmax_exp(store, experiment, "-m", f"experiment={experiment}", *extra, *scale(experiment, quick))
        if status != 0 and not (status == 1 and experiment in EXPECTED_TO_FAIL):
            sys.exit(f"results: experiment={experiment} failed (its output is above)")


def teacher_uri(client: MlflowClient) -> str:
    return f"runs:/{latest_run(client, TEACHERS).info.run_id}/model"


def latest_run(client: MlflowClient, experiment_override: str):
    """The latest finished run in the experiment that `tracking.experiment=NAME` names; None without one."""
    experiment = client.get_experiment_by_name(experiment_override.partition("=")[2])
    runs = experiment and client.search_runs(
        [experiment.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]
    )
    return runs[0] if runs else None


# --- reading the stored runs ---------------------------------------------------------------------------------


class Store:
    """The latest sweep of each named experiment in one tracking store, its jobs as a table."""

    def __init__(self, uri: str) -> None:
        self.uri, self.client = uri, MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(report.default_tracking()[1])
        self.experiment_id = experiment.experiment_id if experiment else None

    def sweep(self, experiment: str):
        """The experiment's latest sweep, if it has been summed up (a sweep still running has no summary yet)."""
        found = self.experiment_id and report.find_sweep(self.client, self.experiment_id, f"experiment={experiment}")
        return found if found and found.info.status == "FINISHED" else None

    def jobs(self, sweep) -> pd.DataFrame:
        """summary.job_table's rows, with every param of each job as a column `param:KEY` (strings)."""
        jobs = pd.DataFrame(job_table(self.client, sweep.info.run_id))
        params = pd.DataFrame(list(jobs["params"])).add_prefix("param:")
        return pd.concat([jobs, params], axis=1)

    def command(self, sweep, experiment: str) -> str:
        """The sweep's command line: the experiment and what its command line changed in it."""
        params, swept = sweep.data.params, sweeper_params(experiment)
        extra = [f"{key}={value}" for key, value in params.items() if shown(key) and swept.get(key) != value]
        return " ".join(["python -m softmax_exp -m", f"experiment={experiment}", *extra])

    def run_command(self, run_id: str) -> str:
        """A single run's command line, from Hydra's record of its overrides."""
        path = self.client.download_artifacts(run_id, "hydra/overrides.yaml")
        overrides = yaml.safe_load(Path(path).read_text()) or []
        return " ".join(["python -m softmax_exp", *(o for o in overrides if shown(o.partition("=")[0]))])

    def figure(self, sweep, name: str, out: Path, as_name: str) -> str:
        """A figure the sweep's summary logged, copied to out/figures/; its path relative to `out`."""
        (out / "figures").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.client.download_artifacts(sweep.info.run_id, name), out / "figures" / as_name)
        return f"figures/{as_name}"


def shown(key: str) -> bool:
    return not key.lstrip("+~").startswith(NOT_SHOWN)


def where(jobs: pd.DataFrame, **params: str) -> pd.DataFrame:
    """The jobs whose params equal `params` (keys with dots are passed as **{"data.label_noise": "0.2"})."""
    mask = pd.Series(True, index=jobs.index)
    for key, value in params.items():
        mask &= jobs[f"param:{key}"] == value
    return jobs[mask]


def summary(jobs: pd.DataFrame) -> dict:
    """replicates.group_summary of `jobs` taken as one configuration: n, failed, means and 95% CIs."""
    return replicates.group_summary(jobs.assign(group="all")).iloc[0].to_dict()


def cell(jobs: pd.DataFrame) -> str:
    """Final test accuracy: mean ± half the 95% CI over the seeds (the report's format)."""
    return report.mean_ci(summary(jobs), "test_acc") if len(jobs) else "-"


def paired(baseline: pd.DataFrame, other: pd.DataFrame, factor: str, options: tuple[str, str]) -> dict | None:
    """other − baseline in final test accuracy, paired over seeds, with its 95% CI (replicates' contrast)."""
    both = pd.concat([baseline.assign(option=options[0]), other.assign(option=options[1])])
    both = both[both["status"] == "FINISHED"]
    rows = replicates.paired_difference(
        both.assign(key=both["seed"], **{factor: both["option"]}), factor, list(options), "test_acc", "all"
    )
    return rows[0] if rows else None


def difference(contrast: dict | None) -> str:
    if contrast is None:
        return "-"
    interval = f"{contrast['ci95_low']:+.4f} … {contrast['ci95_high']:+.4f}"
    return f"{contrast['mean']:+.4f} ({interval}): {contrast['verdict']}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def code(*lines: str) -> list[str]:
    return ["```", *lines, "```"]


def report_text(jobs: pd.DataFrame) -> list[str]:
    """What `python -m softmax_exp.report` prints for the sweep, less its first line (the sweep's id)."""
    return report.format_replicates(replicates.group_summary(jobs), replicates.contrasts(jobs)).splitlines()


# --- the sections of results.md ------------------------------------------------------------------------------


def default_run(store: Store, run) -> list[str]:
    history = {key: store.client.get_metric_history(run.info.run_id, key) for key in replicates.METRICS[::-1]}
    epochs = [[str(step), *(f"{history[key][step - 1].value:.4f}" for key in history)] for step in range(1, 1 + len(
        history["test_acc"]))]  # fmt: skip
    return [
        "## The default run",
        "",
        *code(store.run_command(run.info.run_id)),
        "",
        "What it prints each epoch, less the seconds:",
        "",
        *table(["epoch", *history], epochs),
    ]


def grid(store: Store, sweep, out: Path) -> list[str]:
    jobs = store.jobs(sweep)
    torch_loss = where(jobs, loss="torch")
    rows = []
    for lr in sorted(torch_loss["param:lr"].unique(), key=float):
        hard, soft = (where(torch_loss, lr=lr, labels=labels) for labels in ("hard", "soft"))
        ranges = [f"{part['test_acc'].min():.4f} … {part['test_acc'].max():.4f}" for part in (hard, soft)]
        rows.append([lr, cell(hard), ranges[0], cell(soft), ranges[1]])
        rows[-1].append(difference(paired(hard, soft, "labels", ("hard", "soft"))))
    best = replicates.group_summary(jobs).iloc[0]
    best_line = (
        f"Best configuration by mean: {best['group']}, {report.mean_ci(best, 'test_acc')} "
        f"(95% CI {best['test_acc_ci95_low']:.4f} … {best['test_acc_ci95_high']:.4f}), n = {best['n']}."
    )
    header = ["lr", "hard labels", "hard: seeds' range", "soft (ε = 0.1)", "soft: seeds' range", "soft − hard"]
    return [
        "## The grid: hand-written against torch's loss, hard against soft labels, three learning rates",
        "",
        *code(store.command(sweep, "grid"), "python -m softmax_exp.report experiment=grid"),
        "",
        "Final test accuracy with `loss=torch`, mean over the seeds ± half the width of its 95% confidence",
        "interval (Student's t), the lowest and highest seed, and soft − hard paired over the seeds (95% CI):",
        "",
        *table(header, rows),
        "",
        best_line,
        "",
        "The report's table per configuration and its contrasts. They pair the runs of both losses, which",
        "train alike, so each seed counts twice in the labels contrasts; the table above pairs `loss=torch` alone:",
        "",
        *code(*report_text(jobs)),
        "",
        f"![test accuracy against lr, per configuration]({store.figure(sweep, 'test_acc_vs_lr.png', out, 'grid.png')})",
    ]


def lr_sweep(store: Store, sweep, out: Path) -> list[str]:
    jobs = store.jobs(sweep)
    rows = []
    for lr in sorted(jobs["param:lr"].unique(), key=float):
        group = summary(where(jobs, lr=lr))
        rows.append([lr, *(report.mean_ci(group, metric) for metric in replicates.METRICS), str(group["n"])])
    figure = store.figure(sweep, "test_acc_vs_lr.png", out, "lr_sweep.png")
    return [
        "## The learning rate",
        "",
        *code(store.command(sweep, "lr_sweep"), "python -m softmax_exp.report experiment=lr_sweep"),
        "",
        "Final values, mean over the seeds ± half the width of its 95% confidence interval:",
        "",
        *table(["lr", "test_acc", "train_acc", "train_loss", "n"], rows),
        "",
        f"![test accuracy against lr]({figure})",
    ]


def overflow(store: Store, sweep, out: Path) -> list[str]:
    jobs = store.jobs(sweep)
    rows = []
    for job in jobs.sort_values(["loss", "seed"]).to_dict("records"):
        logits = [m.value for m in store.client.get_metric_history(job["run_id"], "max_abs_logit")]
        error = store.client.get_run(job["run_id"]).data.tags.get("error", "")
        finals = [f"{job[key]:.4g}" if pd.notna(job[key]) else "-" for key in ("train_loss", "test_acc")]
        largest = f"{min(logits):.4g} … {max(logits):.4g}" if logits else "-"
        rows.append([job["loss"], job["status"], largest, *finals, error.replace("|", "\\|")])
    header = ["loss", "status", "largest \\|logit\\| per epoch (lowest … highest)", "train_loss", "test_acc", "error"]
    return [
        "## Overflow: the unshifted softmax on raw pixels",
        "",
        *code(store.command(sweep, "overflow")),
        "",
        "Each job's final values; `data.pixel_scale=255` feeds the raw bytes. The naive job is meant to fail.",
        "",
        *table(header, rows),
    ]


def label_noise(store: Store, sweep, out: Path) -> list[str]:
    jobs = store.jobs(sweep)
    smoothings = sorted(jobs["param:labels.smoothing"].unique(), key=float)
    rows = []
    for noise in sorted(jobs["param:data.label_noise"].unique(), key=float):
        at = where(jobs, **{"data.label_noise": noise})
        by = {eps: where(at, **{"labels.smoothing": eps}) for eps in smoothings}
        hard = by[smoothings[0]]
        rows.append([noise, *(cell(by[eps]) for eps in smoothings)])
        rows[-1] += [difference(paired(hard, by[eps], "ε", (smoothings[0], eps))) for eps in smoothings[1:]]
    differences = [f"ε = {eps} − ε = {smoothings[0]}" for eps in smoothings[1:]]
    header = ["noise p", *(f"ε = {eps}" for eps in smoothings), *differences]
    return [
        "## Label noise against label smoothing",
        "",
        *code(store.command(sweep, "label_noise"), "python -m softmax_exp.report experiment=label_noise"),
        "",
        "Final test accuracy (on clean test labels), mean ± half the 95% CI over the seeds; ε = 0 is the hard",
        "label. Differences are paired over the seeds, which corrupt the same images for every ε:",
        "",
        *table(header, rows),
    ]


def distill(store: Store, sweep, out: Path) -> list[str]:
    jobs = store.jobs(sweep)
    teacher_id = store.client.get_run(jobs["run_id"].iloc[0]).data.tags["teacher_run_id"]
    teacher = store.client.get_run(teacher_id).data.metrics["final_test_acc"]
    temperatures = sorted(jobs["param:labels.temperature"].unique(), key=float)
    rows = []
    for alpha in sorted(jobs["param:labels.alpha"].unique(), key=float):
        by = {t: where(jobs, **{"labels.alpha": alpha, "labels.temperature": t}) for t in temperatures}
        rows.append([alpha, *(cell(by[t]) for t in temperatures)])
        rows[-1] += [difference(paired(by["inf"], by[t], "T", ("inf", t))) for t in temperatures if t != "inf"]
    header = ["α", *(f"T = {t}" for t in temperatures)] + [f"T = {t} − T = inf" for t in temperatures if t != "inf"]
    lines = [
        "## A teacher's soft labels against uniform smoothing",
        "",
        *code(store.run_command(teacher_id), store.command(sweep, "distill")),
        "",
        f"The teacher: final test accuracy {teacher:.4f}. T = inf is uniform label smoothing with ε = α.",
        "Students' final test accuracy, mean ± half the 95% CI over the seeds; differences paired over the seeds:",
        "",
        *table(header, rows),
    ]
    noise = store.sweep("label_noise")
    if noise is not None:  # hard labels with the same recipe and seeds: label_noise's ε = 0, p = 0 jobs
        hard = where(store.jobs(noise), **{"labels.smoothing": "0.0", "data.label_noise": "0.0"})
        student = jobs[jobs["group"] == replicates.group_summary(jobs).iloc[0]["group"]]
        t, alpha = (student[f"param:labels.{key}"].iloc[0] for key in ("temperature", "alpha"))
        against = difference(paired(hard, student, "labels", ("hard", "teacher")))
        lines += [
            "",
            f"Hard labels with the same seeds (label_noise's ε = 0, p = 0): {cell(hard)}.",
            f"The best student by mean (T = {t}, α = {alpha}) against them, paired over the seeds: {against}.",
        ]
    return lines


def search(store: Store, sweep, out: Path) -> list[str]:
    tags, metrics = sweep.data.tags, sweep.data.metrics
    trials = pd.read_csv(store.client.download_artifacts(sweep.info.run_id, "trials.csv"))
    pruned = int((trials["state"] == "PRUNED").sum())
    figure = store.figure(sweep, "optimization_history.png", out, "search.png")
    return [
        "## A search: Optuna's trials in lock-step, pruned by successive halving",
        "",
        *code(store.command(sweep, "search")),
        "",
        f"{len(trials)} trials, {pruned} of them pruned; each scored on its final validation accuracy (the held-out",
        "training images), which chose the best; its test accuracy is beside it, looked at once.",
        "",
        *table(
            ["best trial", "its parameters", "val_acc", "test_acc"],
            [
                [
                    f"#{tags['best_trial']}",
                    tags["best_trial_params"].replace("|", "\\|"),
                    f"{metrics['best_trial_val_acc']:.4f}",
                    f"{metrics['best_trial_test_acc']:.4f}",
                ]
            ],
        ),  # fmt: skip
        "",
        f"![validation accuracy by trial]({figure})",
    ]


SECTIONS = {
    "grid": grid,
    "lr_sweep": lr_sweep,
    "overflow": overflow,
    "label_noise": label_noise,
    "distill": distill,
    "search": search,
}


def machine() -> str:
    """This machine's cores and CPU model, for the time the runs took (written where they ran)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [
        line.partition(":")[2].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
    ]
    return f"{os.cpu_count()} cores of {names[0] if names else platform.machine()}"


def minutes(client: MlflowClient) -> float:
    """From the first run's start to the last run's end, over every run in the store."""
    runs = [run for e in client.search_experiments() for run in client.search_runs([e.experiment_id])]
    return (max(run.info.end_time or 0 for run in runs) - min(run.info.start_time for run in runs)) / 60_000


def write(uri: str, out: Path) -> Path:
    """results.md and its figures in `out`, from the latest sweep of each named experiment in the store."""
    store = Store(uri)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = {experiment: store.sweep(experiment) for experiment in EXPERIMENTS}
    commits = {s.data.tags.get("git_commit", "?")[:12] + (" (dirty)" if s.data.tags.get("git_dirty") == "True" else "")
               for s in sweeps.values() if s is not None}  # fmt: skip
    took = f"; the runs took {minutes(store.client):.0f} minutes on {machine()}" if commits else ""
    lines = [
        "# Results",
        "",
        "Written by `scripts/results.sh` from the runs it made (do not edit: run it again). Each section gives",
        "its commands as you would type them; the script adds a store of its own (`tracking.uri`) and folders.",
        f"Code: commit {', '.join(sorted(commits)) or '?'}{took}.",
    ]
    run = latest_run(store.client, DEFAULT_RUN)
    lines += ["", *(default_run(store, run) if run else ["## The default run: not run"])]
    for experiment, sweep in sweeps.items():
        lines += ["", *(SECTIONS[experiment](store, sweep, out) if sweep else [f"## {experiment}: not run"])]
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def unconfirmed(page: str, results: str) -> list[str]:
    """The lines `page` quotes from results.md (between OPEN and CLOSE lines) that results.md does not hold."""
    held = {line.strip() for line in results.splitlines()}
    quoted, inside = [], False
    for line in page.splitlines():
        if line.strip() in (OPEN, CLOSE):
            inside = line.strip() == OPEN
        elif inside and line.strip() and line.strip() not in held:
            quoted.append(line.strip())
    return quoted


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softmax_exp.results", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, images and seeds: a few minutes")
    parser.add_argument(
        "--out", type=Path, help="where results.md and figures/ go (default: docs/; --quick: the store)"
    )
    parser.add_argument("--store", type=Path, help="a new folder for the runs (default: outputs/results/<time>)")
    parser.add_argument("--from-store", metavar="URI", help="write from the runs already in this store; run nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.from_store:
        print(f"results: wrote {write(args.from_store, args.out or PROJECT_ROOT / 'docs')}")
        return 0
    now = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    store = (args.store or PROJECT_ROOT / "outputs" / "results" / (now + ("-quick" if args.quick else ""))).resolve()
    if store.exists():
        sys.exit(f"results: {store} exists: give --store a new folder, so that every result comes from this run")
    store.mkdir(parents=True)
    run_all(store, args.quick)
    out = args.out or (store if args.quick else PROJECT_ROOT / "docs")
    print(f"results: wrote {write(f'sqlite:///{store}/mlflow.db', out.resolve())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
