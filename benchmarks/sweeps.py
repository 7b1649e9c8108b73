"""Sweeps on each launcher, against one default single run, measured in one run on this machine.

    python benchmarks/sweeps.py [--reps 3] [--slow-reps 1] [--before REV] [--launchers basic,two_at_a_time,vectorized]
    python benchmarks/sweeps.py --grids 12 --launchers vectorized,ray_cluster --sweeps-only   # Ray against vectorized

Measures, with the wall time of one default `python -m softmax_exp` (10 epochs, start-up and tracking
included) as the unit:
1. the 12-job grid (loss x labels x lr, 10 epochs, full data) and the 60-job grid (the same x seeds 0-4),
   each on hydra/launcher=basic, two_at_a_time and vectorized, and on request ray_cluster: a one-node Ray
   cluster of all cores on loopback (`ray start`, the `cluster` extra), started before the sweeps and
   stopped after, as a cluster is up before a sweep is sent to it;
2. training seconds per config-epoch of the lock-step trainer at K = 1, 12, 60 (lockstep_epochs.py);
3. the peak RSS of the 60-job vectorized sweep;
4. the default single run at REV (default: the commit before the lock-step trainer), in a temporary git
   worktree, next to today's, to show the single run got no slower.
Vectorized sweeps and single runs are timed --reps times (medians); the other launchers' sweeps, minutes
each, --slow-reps times; --sweeps-only measures 1. against the unit alone, skipping 2.-4. Each vectorized
sweep follows a single run of its own (the machine's speed drifts over minutes: ratios compare runs made
side by side), and the unit is the median of every single run of today's code. Every time has its
median final test accuracy next to it. Writes
benchmarks/results/sweeps.{md,json}; each child's output goes to benchmarks/results/logs/.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import median

from bench import LOGS, PROJECT, RESULTS, Child, last_json, run

BENCH_DIR = Path(__file__).resolve().parent
GRID = ["loss=scratch,torch", "labels=hard,soft", "lr=0.01,0.05,0.1"]
SWEEPS = {12: GRID, 60: [*GRID, "seed=0,1,2,3,4"]}
LAUNCHERS = ("basic", "two_at_a_time", "vectorized")  # the default; ray_cluster on request
BEFORE = "00ecbb1"  # main before the lock-step trainer (one model per process, per job)
# Targets (issue #8), as ratios measured in this one run.
TARGETS = {"grid12_vs_single": 2, "grid60_vs_single": 6, "k60_epoch_fraction": 1 / 5, "rss60_mb": 1500, "single": 1.05}
FINAL_TEST_ACC = re.compile(r"epoch\s+10\s+train_loss=\S+\s+train_acc=\S+\s+test_acc=([\d.]+)")


def job_accuracies(store: Path) -> list[float]:
    """Final test accuracy of every job of the sweeps in a store, read back from MLflow (a child process keeps
    this one free of MLflow and torch: see bench.py)."""
    script = (
        "import json,sys; from mlflow.tracking import MlflowClient; c = MlflowClient(sys.argv[1]); "
        "runs = c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=1000); "
        "print(json.dumps([r.data.metrics['final_test_acc'] for r in runs if 'final_test_acc' in r.data.metrics]))"
    )
    out = subprocess.run([sys.executable, "-c", script, f"sqlite:///{store}/mlflow.db"], capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def ray_cluster():
    """`ray start --head` on loopback with every core, its workers seeing this project; yields its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray = str(Path(sys.executable).parent / "ray")
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths stay under 108 characters
    command = [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               f"--num-cpus={os.cpu_count()}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp_dir}"]  # fmt: skip
    log = (LOGS / "ray_cluster.log").open("w")
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}  # the workers inherit `ray start`'s environment
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        while subprocess.run([ray, "status", f"--address={address}"], capture_output=True).returncode != 0:
            if head.poll() is not None:
                sys.exit(f"[bench] ray start failed: see {LOGS / 'ray_cluster.log'}")
            time.sleep(1)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: the head stops the processes it started
        head.wait(timeout=120)
        log.close()


def single_run(name: str, root: Path, scratch: Path) -> Child:
    """One default `python -m softmax_exp` of the checkout at `root`, into a store of its own."""
    store = scratch / name
    args = ["-m", "softmax_exp", f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.run.dir={store}/run"]
    return run(name, args, cwd=root)


def summed_up(children: list) -> dict:
    return {
        "samples": [r.seconds for r in children],
        "seconds": median(r.seconds for r in children),
        "test_acc": float(FINAL_TEST_ACC.findall(children[-1].output)[-1]),
    }


def single_runs(roots: dict[str, Path], scratch: Path, reps: int) -> dict[str, list]:
    """Default runs of each checkout in `roots`, interleaved so that a slow spell of the machine lands on all of
    them, after one warm-up each (it creates the store and decompresses the data into the checkout)."""
    runs = {name: [] for name in roots}
    for i in ["warmup", *range(reps)]:
        for name, root in roots.items():
            child = single_run(f"{name}_{i}", root, scratch)
            if i != "warmup":
                runs[name].append(child)
    return runs


def sweep(scratch: Path, jobs: int, launcher: str, options: list[str], reps: int, units: list | None = None) -> dict:
    """The grid of `jobs` jobs on `launcher`, `reps` times, each into a store of its own; with `units`, each
    rep right after a default single run, appended to `units`: the machine's speed drifts over minutes, so the
    ratio compares runs made side by side."""
    times, rss, accuracies, ratios = [], [], [], []
    for i in range(reps):
        if units is not None:
            units.append(single_run(f"single_before_sweep{jobs}_{i}", PROJECT, scratch))
        store = scratch / f"sweep{jobs}_{launcher}_{i}"
        args = ["-m", "softmax_exp", "-m", f"hydra/launcher={launcher}", *options, *SWEEPS[jobs]]
        args += [f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.sweep.dir={store}/sweep"]
        child = run(f"sweep{jobs}_{launcher}_{i}", args)
        times.append(child.seconds)
        rss.append(child.peak_rss_mb)  # of the launching process: Ray's workers are the cluster's, not its own
        if units is not None:
            ratios.append(child.seconds / units[-1].seconds)
        accuracies = job_accuracies(store)
    assert len(accuracies) == jobs, f"{jobs}-job sweep on {launcher}: {len(accuracies)} jobs finished"
    summary = {
        "samples": times,
        "seconds": median(times),
        "peak_rss_mb": max(rss),
        "median_test_acc": median(accuracies),
    }
    if ratios:  # each sweep against the single run made right before it
        summary["paired_ratios"] = ratios
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed single runs and vectorized sweeps")
    parser.add_argument("--slow-reps", type=int, default=1, help="timed sweeps on the other launchers (minutes each)")
    parser.add_argument("--before", default=BEFORE, help="the commit whose single run today's is compared with")
    parser.add_argument(
        "--launchers",
        default=",".join(LAUNCHERS),
        help="comma-separated, of basic, two_at_a_time, vectorized, ray_cluster; vectorized alone skips the slow ones",
    )
    parser.add_argument("--grids", default=",".join(map(str, SWEEPS)), help="comma-separated, of 12 and 60 (jobs)")
    parser.add_argument("--sweeps-only", action="store_true", help="the sweeps and the unit: no lock-step, no REV")
    opts = parser.parse_args()
    LOGS.mkdir(parents=True, exist_ok=True)
    report = {"options": vars(opts)}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if opts.sweeps_only:
            singles = single_runs({"single": PROJECT}, scratch, opts.reps)
        else:
            before = scratch / "before"
            worktree = ["git", "worktree", "add", "--detach", "-q", str(before), opts.before]
            subprocess.run(worktree, cwd=PROJECT, check=True)
            try:
                singles = single_runs({"single": PROJECT, "single_before": before}, scratch, opts.reps)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=PROJECT, check=True)
            report["single_before"] = summed_up(singles["single_before"])
            report["single_interleaved_with_before"] = summed_up(singles["single"])
            pairs = zip(singles["single"], singles["single_before"], strict=True)
            report["single_vs_before_paired_ratios"] = [today.seconds / then.seconds for today, then in pairs]

        report["sweeps"] = {}
        launchers = opts.launchers.split(",")
        with ray_cluster() if "ray_cluster" in launchers else nullcontext() as address:
            for jobs in map(int, opts.grids.split(",")):
                for launcher in launchers:
                    reps = opts.reps if launcher == "vectorized" else opts.slow_reps
                    options = [f"hydra.launcher.ray.init.address={address}"] if launcher == "ray_cluster" else []
                    units = singles["single"] if launcher == "vectorized" else None
                    report["sweeps"][f"{jobs}_{launcher}"] = sweep(scratch, jobs, launcher, options, reps, units)
        report["single"] = summed_up(singles["single"])  # the unit: every default run of today's code
    if opts.sweeps_only:
        write(report)
        return
    report["lockstep"] = last_json(
        run("lockstep_epochs", [str(BENCH_DIR / "lockstep_epochs.py"), "--reps", "3"]).output
    )
    write(report)


def write(report: dict) -> None:
    unit, sweeps = report["single"]["seconds"], report["sweeps"]
    lines = [
        f"Unit: one default single run, {unit:.2f} s end to end (median of {len(report['single']['samples'])}, "
        f"test_acc {report['single']['test_acc']:.4f}).",
        "",
        "| sweep | launcher | wall time | x single run | peak RSS | median test_acc |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in sweeps.items():
        jobs, launcher = name.split("_", 1)
        lines.append(
            f"| {jobs} jobs | {launcher} | {row['seconds']:.1f} s | {row['seconds'] / unit:.2f}x | "
            f"{row['peak_rss_mb']:.0f} MB | {row['median_test_acc']:.4f} |"
        )
    if any(name.endswith("_ray_cluster") for name in sweeps):
        lines += ["", "ray_cluster: the cluster was up before each sweep; peak RSS is the launching process's alone."]
    if "lockstep" in report:
        lines += targets(report)
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweeps.md").write_text(text)
    (RESULTS / "sweeps.json").write_text(json.dumps(report, indent=2))
    print(text)


def targets(report: dict) -> list[str]:
    """The lock-step table, and issue #8's targets against what was measured."""
    sweeps, k = report["sweeps"], report["lockstep"]
    k1 = median(k["1"]["config_epoch_seconds"])
    lines = ["", "| K configs in lock-step | training s per config-epoch | fraction of K=1 | median test_acc |"]
    lines += ["|---|---|---|---|"]
    for size, row in k.items():
        seconds = median(row["config_epoch_seconds"])
        lines.append(f"| {size} | {seconds * 1000:.1f} ms | {seconds / k1:.3f} | {row['test_acc']:.4f} |")
    before, today = report["single_before"]["seconds"], report["single_interleaved_with_before"]["seconds"]
    # Ratios of runs made back to back, then their median: the machine's speed drifts by 20-30% over minutes.
    checks = {
        "12-job grid (vectorized) <= 2x a single run": median(sweeps["12_vectorized"]["paired_ratios"]),
        "60-job grid (vectorized) <= 6x a single run": median(sweeps["60_vectorized"]["paired_ratios"]),
        "K=60 config-epoch <= 1/5 of a single run's epoch": median(k["60"]["config_epoch_seconds"]) / k1,
        "peak RSS of the 60-job sweep <= 1500 MB": sweeps["60_vectorized"]["peak_rss_mb"],
        f"single run vs {report['options']['before']} <= 1.05": median(report["single_vs_before_paired_ratios"]),
    }
    limits = [TARGETS[key] for key in ("grid12_vs_single", "grid60_vs_single", "k60_epoch_fraction", "rss60_mb")]
    limits.append(TARGETS["single"])
    lines += [
        "",
        f"Single run before the lock-step trainer: {before:.2f} s; today, interleaved with it: {today:.2f} s.",
        "",
    ]
    lines += ["Sweeps and single runs as ratios of runs made back to back, the median of those ratios:", ""]
    lines += ["| target | measured | met |", "|---|---|---|"]
    for (name, value), limit in zip(checks.items(), limits, strict=True):
        lines.append(f"| {name} | {value:.3f} | {'yes' if value <= limit else 'NO'} |")
    return lines


if __name__ == "__main__":
    main()
