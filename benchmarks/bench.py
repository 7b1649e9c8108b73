"""The suite against the textbook pipeline (benchmarks/textbook.py), measured in one run on this machine.

    python benchmarks/bench.py [--reps 3] [--textbook-epochs 3] [--textbook-runs 2] [--quick]

Measures (1) seconds per epoch, training plus test evaluation, for each loss x optimizer; (2) the wall time
of a default 10-epoch `python -m softmax_exp`, start-up and tracking included, against the textbook script
for 10 epochs; (3) the wall time of the 12-job grid on the vectorized launcher against 12 textbook runs; (4) the
peak RSS of a single run. Each measurement has a warm-up that is not timed; tables give medians, the
speed-up (textbook / suite), the final test accuracy next to each time, and pass/fail against the targets.
Writes benchmarks/results/benchmark.{md,json}, and every child's output to benchmarks/results/logs/.

Every measurement runs in a child process and this one stays small, on purpose: Linux starts a child's peak
RSS (ru_maxrss) at its parent's, so a parent that had imported torch would inflate every RSS reported here.
"""

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from statistics import median

BENCH_DIR = Path(__file__).resolve().parent
PROJECT = BENCH_DIR.parent
RESULTS, LOGS = BENCH_DIR / "results", BENCH_DIR / "results" / "logs"
TEXTBOOK, SUITE_EPOCHS = BENCH_DIR / "textbook.py", BENCH_DIR / "suite_epochs.py"
EPOCHS = 10  # a default run's epochs (conf/config.yaml)
SWEEP = ["loss=scratch,torch", "labels=hard,soft", "lr=0.01,0.05,0.1"]  # the 12-job grid, one seed
SWEEP_JOBS = 12
DEFAULT_COMBO = "loss=torch optimizer=torch"
# Targets from issue #4: speed-ups (textbook / suite), accuracy tolerance, memory.
EPOCH_TARGET, DEFAULT_EPOCH_TARGET, RUN_TARGET, SWEEP_TARGET = 25, 40, 10, 25
ACC_TOLERANCE, RSS_LIMIT_MB = 0.005, 1000  # 1 GB = 1000 MB of 10^6 bytes
# The suite's per-epoch log line (EpochMetrics.line): read for each run's final test accuracy.
EPOCH_LINE = re.compile(r"epoch\s+(\d+)\s+train_loss=\S+\s+train_acc=\S+\s+test_acc=([\d.]+)")


@dataclass
class Child:
    seconds: float  # wall time, start-up included
    peak_rss_mb: float
    output: str  # stdout and stderr


def run(name: str, args: list[str], cwd: Path = PROJECT) -> Child:
    """Run one child to the end, in `cwd`; its output goes to results/logs/NAME.log."""
    log_path = LOGS / f"{name}.log"
    print(f"[bench] {name}: {' '.join(args[1:])}", file=sys.stderr, flush=True)
    with log_path.open("w") as log:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone, not of all children so far
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"[bench] {name} failed (exit code {child.returncode}): see {log_path}")
    print(f"[bench] {name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return Child(seconds, usage.ru_maxrss * 1024 / 1e6, log_path.read_text())


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def final_accuracies(output: str) -> list[float]:
    """Test accuracy after the last epoch of each run logged in `output`."""
    return [float(acc) for epoch, acc in EPOCH_LINE.findall(output) if int(epoch) == EPOCHS]


def measure(opts: argparse.Namespace, store: Path) -> tuple[dict, dict]:
    """The textbook and the suite side by side, so that a slow spell of this shared machine lands on both.

    First seconds per epoch (textbook, then the suite's trainer in-process); then rounds, each timing one
    textbook 10-epoch run (extrapolated with --quick), one real `python -m softmax_exp` run and one sweep,
    both tracking to a temporary store.
    """
    epochs_run = run("textbook_epochs", [str(TEXTBOOK), "--epochs", str(1 + opts.textbook_epochs)])
    combos = last_json(run("suite_epochs", [str(SUITE_EPOCHS), "--reps", str(opts.reps)]).output)
    for combo in combos.values():
        combo["epoch_seconds_median"] = median(combo["epoch_seconds"])
    report = last_json(epochs_run.output)
    timed = report["epoch_seconds"][1:]

    tracking = f"tracking.uri=sqlite:///{store}/mlflow.db"
    single = ["-m", "softmax_exp", tracking]
    # Creates the store (a user's store exists already) and warms the disk cache; not timed.
    run("suite_run_warmup", [*single, f"hydra.run.dir={store}/run_warmup"])
    textbook_runs, runs, sweeps = [], [], []
    for i in range(max(opts.reps, 0 if opts.quick else opts.textbook_runs)):
        if not opts.quick and i < opts.textbook_runs:
            textbook_runs.append(run(f"textbook_run{i}", [str(TEXTBOOK), "--epochs", str(EPOCHS)]))
        if i < opts.reps:
            runs.append(run(f"suite_run{i}", [*single, f"hydra.run.dir={store}/run{i}"]))
            sweep = ["-m", "softmax_exp", "-m", "hydra/launcher=vectorized", *SWEEP, tracking]
            sweep.append(f"hydra.sweep.dir={store}/sweep{i}")
            sweeps.append(run(f"suite_sweep{i}", sweep))

    if opts.quick:
        # The epochs run, start-up and warm-up epoch included, plus the epochs it did not run at the median.
        ran = len(report["epoch_seconds"])
        textbook = {"run_samples": [epochs_run.seconds + (EPOCHS - ran) * median(timed)], "acc_epochs": ran}
    else:
        textbook = {"run_samples": [r.seconds for r in textbook_runs], "acc_epochs": EPOCHS}
        reports = [last_json(r.output) for r in textbook_runs]
        report = reports[-1]
        # Their epochs after the first are more samples of the same thing, for free.
        timed += [epoch for each in reports for epoch in each["epoch_seconds"][1:]]
    textbook.update(test_acc=report["test_acc"], epoch_samples=timed, epoch_seconds=median(timed))
    textbook["run_seconds"] = median(textbook["run_samples"])
    suite = {
        "combos": combos,
        "run_samples": [r.seconds for r in runs],
        "run_seconds": median(r.seconds for r in runs),
        "run_test_acc": (final_accuracies(runs[-1].output) or [None])[-1],
        "peak_rss_samples_mb": [r.peak_rss_mb for r in runs],
        "sweep_samples": [s.seconds for s in sweeps],
        "sweep_seconds": median(s.seconds for s in sweeps),
        "sweep_test_accs": final_accuracies(sweeps[-1].output),
    }
    return textbook, suite


def row(what, n, textbook_s, textbook_acc, suite_s, suite_acc, target, fastest, acc_checked=None) -> dict:
    """One line of the table; `acc_checked` is None where the target says nothing about accuracy.

    `fastest` is (textbook, suite) for the fastest sample of each: noise on a shared machine only ever adds
    time, so their ratio is a steadier second estimate; the targets are judged on the medians.
    """
    speedup = textbook_s / suite_s
    failures = [] if speedup >= target else ["speed"]
    if acc_checked is False:
        failures.append("accuracy")
    return {
        "measurement": what, "n": n, "textbook_seconds": textbook_s, "textbook_test_acc": textbook_acc,
        "suite_seconds": suite_s, "suite_test_acc": suite_acc, "speedup": speedup,
        "speedup_fastest": fastest[0] / fastest[1], "target": f">= {target}x",
        "result": "FAIL: " + ", ".join(failures) if failures else "PASS",
    }  # fmt: skip


def build_rows(opts: argparse.Namespace, textbook: dict, suite: dict) -> list[dict]:
    acc_note = "" if textbook["acc_epochs"] == EPOCHS else f" (after {textbook['acc_epochs']} epochs)"
    textbook_acc = f"{textbook['test_acc']:.4f}{acc_note}"
    rows = []
    for name, combo in suite["combos"].items():
        default = name == DEFAULT_COMBO
        acc_ok = abs(combo["test_acc"] - textbook["test_acc"]) <= ACC_TOLERANCE if not acc_note else None
        target = DEFAULT_EPOCH_TARGET if default else EPOCH_TARGET
        what = f"s/epoch, {name}" + (" (default)" if default else "")
        n = f"{len(textbook['epoch_samples'])} / {len(combo['epoch_seconds'])} epochs"
        rows.append(
            row(
                what,
                n,
                textbook["epoch_seconds"],
                textbook_acc,
                combo["epoch_seconds_median"],
                f"{combo['test_acc']:.4f}",
                target,
                (min(textbook["epoch_samples"]), min(combo["epoch_seconds"])),
                acc_ok if default else None,
            )
        )
        if default:
            rows[-1]["target"] += f", acc +-{ACC_TOLERANCE}" + (" (not checked)" if acc_ok is None else "")
    extrapolated = " (textbook extrapolated)" if opts.quick else ""
    run_acc = suite["run_test_acc"]
    rows.append(
        row(
            f"10-epoch run end to end, start-up included{extrapolated}",
            f"{len(textbook['run_samples'])} / {opts.reps}",
            textbook["run_seconds"],
            textbook_acc,
            suite["run_seconds"],
            "n/a" if run_acc is None else f"{run_acc:.4f}",
            RUN_TARGET,
            (min(textbook["run_samples"]), min(suite["run_samples"])),
        )
    )
    accs = suite["sweep_test_accs"]
    sweep_acc = f"{min(accs):.4f}-{max(accs):.4f} ({len(accs)} jobs)" if accs else "n/a"
    rows.append(
        row(
            f"{SWEEP_JOBS}-job sweep (textbook: {SWEEP_JOBS} x one run, extrapolated)",
            f"{len(textbook['run_samples'])} / {opts.reps}",
            SWEEP_JOBS * textbook["run_seconds"],
            textbook_acc,
            suite["sweep_seconds"],
            sweep_acc,
            SWEEP_TARGET,
            (SWEEP_JOBS * min(textbook["run_samples"]), min(suite["sweep_samples"])),
        )
    )
    peak = max(suite["peak_rss_samples_mb"])
    rows.append({
        "measurement": "peak RSS of a single run (MB)", "n": f"- / {opts.reps}", "textbook_seconds": None,
        "textbook_test_acc": None, "suite_seconds": None, "suite_test_acc": rows[-2]["suite_test_acc"],
        "speedup": None, "speedup_fastest": None, "peak_rss_mb": peak, "target": f"<= {RSS_LIMIT_MB} MB",
        "result": "PASS" if peak <= RSS_LIMIT_MB else "FAIL: memory",
    })  # fmt: skip
    return rows


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def markdown(rows: list[dict], meta: dict) -> str:
    header = (
        "| Measurement | n (textbook / suite) | Textbook | test acc | Suite | test acc | Speed-up | Target | Result "
        "| Speed-up, fastest of each |"
    )
    load = meta["load_average_1min"]
    title = f"Benchmark, {meta['mode']}: {meta['date']}, {meta['machine']}"
    title += f", load average {load['before']:.2f} before and {load['after']:.2f} after ({meta['bench_seconds']:.0f} s)"
    lines = [title, "", header, "|" + "---|" * 10]
    for r in rows:
        suite = f"{r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else seconds(r["suite_seconds"])
        speedup, fastest = ("-" if r[key] is None else f"{r[key]:.1f}x" for key in ("speedup", "speedup_fastest"))
        cells = [r["measurement"], r["n"], seconds(r["textbook_seconds"]), r["textbook_test_acc"] or "-", suite,
                 r["suite_test_acc"], speedup, r["target"], r["result"], fastest]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Medians of the timed repetitions, each after a warm-up. s/epoch is training plus test evaluation: "
        "the textbook's over every epoch but the first of each of its runs, the suite's from `train()` "
        "in-process, labels=hard. Test accuracies are after 10 epochs (seed 0) "
        "unless marked; "
        "the textbook's is that of its 10-epoch run (textbook.py, lr 0.1), shown on every row. "
        "Sweep accuracies: lowest-highest of the 12 jobs (lr 0.01-0.1). Peak RSS: the largest of the timed "
        "default runs. The last column divides the fastest textbook sample by the fastest suite sample: "
        "a slow spell of the machine only adds time, so it is the steadier estimate, not the one judged.",
    ]
    if meta["mode"] != "full run":
        lines.append(
            f"Quick smoke run: the textbook ran {1 + meta['options']['textbook_epochs']} epochs end to end; its "
            "10-epoch time adds the missing epochs at its median epoch time. Not for the README."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, help="timed repetitions of each suite measurement (default 3; quick 1)")
    parser.add_argument(
        "--textbook-epochs", type=int, help="timed textbook epochs after 1 warm-up (default 3; quick 1)"
    )
    parser.add_argument("--textbook-runs", type=int, default=2, help="timed textbook 10-epoch runs, ~80 s each")
    parser.add_argument("--quick", action="store_true", help="smoke run: one of each, textbook 10-epoch time estimated")
    opts = parser.parse_args()
    for key, full, quick in (("reps", 3, 1), ("textbook_epochs", 3, 1)):
        if getattr(opts, key) is None:
            setattr(opts, key, quick if opts.quick else full)

    LOGS.mkdir(parents=True, exist_ok=True)
    load_before, start = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="softmax_exp_bench_") as store:  # never the project's own store
        textbook, suite = measure(opts, Path(store))
    meta = {
        "mode": "quick smoke run" if opts.quick else "full run",
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {version('torch')}, torchvision {version('torchvision')}",
        "options": vars(opts),
        "bench_seconds": time.perf_counter() - start,
        # Other work on the machine lands in the timings: a load well above 1 before or after makes them suspect.
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        # A floor under every child's peak RSS (see the module docstring): must stay far below the RSS reported.
        "bench_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }
    rows = build_rows(opts, textbook, suite)
    table = markdown(rows, meta)
    (RESULTS / "benchmark.md").write_text(table)
    samples = {"textbook": textbook, "suite": suite}
    (RESULTS / "benchmark.json").write_text(json.dumps({"meta": meta, "rows": rows, "samples": samples}, indent=2))
    print(table)


if __name__ == "__main__":
    main()
