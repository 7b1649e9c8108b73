"""Torch's thread count for training: the one chosen from the work (softmax_exp/threads.py) against 1 and 2.

    python benchmarks/threads.py [--reps 3]
    python benchmarks/threads.py --quick      # smoke run: one rep, 1 epoch on 2,000 images

Measures, in one run, the wall time (start-up and tracking included) and the training time (the sum of the
epochs' `seconds=`) of
1. a default single run, `python -m softmax_exp` (one model), and
2. the 60-job grid, `python -m softmax_exp -m hydra/launcher=vectorized experiment=grid` (one lock-step group),
each with `threads` left to the rule, `threads=1` and `threads=2`, on a quiet machine and beside one busy
process (a Python loop spinning on one core, started and stopped here), as a shared machine or a student's
browser would be. Rounds interleave every case, so that a slow spell of the machine lands on all of them;
ratios are of runs made in the same round and condition, then their median. Each run tracks to a store of
its own in a temporary folder, after one untimed run that decompresses the data. Writes
benchmarks/results/threads.{md,json}; each child's output goes to benchmarks/results/logs/.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import median

from bench import LOGS, PROJECT, RESULTS, run

WORKLOADS = {
    "single run": ["-m", "softmax_exp"],
    "60-job grid": ["-m", "softmax_exp", "-m", "hydra/launcher=vectorized", "experiment=grid"],
}
MODELS = {"single run": 1, "60-job grid": 60}  # the lock-step group each one trains
SETTINGS = {"chosen": [], "1 thread": ["threads=1"], "2 threads": ["threads=2"]}
CONDITIONS = ("quiet", "busy")
QUICK = ["epochs=1", "data.limit=2000"]
EPOCH_SECONDS = re.compile(r"^.*\bepoch\s+\d+\s.*\bseconds=([\d.]+)", re.MULTILINE)  # a run's or a group's line


@contextmanager
def busy_core():
    """Another process keeping one core busy, for as long as the block runs."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def chosen_threads() -> dict[str, int]:
    """What the rule chooses here for each workload, asked of a child: this process stays free of torch (bench.py)."""
    models = json.dumps(MODELS)
    script = (
        "import json, sys; from softmax_exp import threads; from softmax_exp.config import resolve_device; "
        "print(json.dumps({w: threads.chosen(k, resolve_device('auto'), None, threads.cores()) "
        "for w, k in json.loads(sys.argv[1]).items()}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, models], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def timed(name: str, workload: str, setting: str, scratch: Path, quick: bool) -> dict:
    store = scratch / name
    args = [*WORKLOADS[workload], *SETTINGS[setting], *(QUICK if quick else [])]
    args += [
        f"tracking.uri=sqlite:///{store}/mlflow.db",
        f"hydra.run.dir={store}/run",
        f"hydra.sweep.dir={store}/sweep",
    ]
    child = run(name, args)
    return {"wall": child.seconds, "training": sum(map(float, EPOCH_SECONDS.findall(child.output)))}


def measure(opts: argparse.Namespace) -> dict:
    samples = {(w, c, s): [] for w in WORKLOADS for c in CONDITIONS for s in SETTINGS}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        timed("warmup", "single run", "chosen", scratch, opts.quick)  # decompresses the data into the checkout
        for rep in range(opts.reps):
            for condition in CONDITIONS:
                with busy_core() if condition == "busy" else nullcontext():
                    for workload in WORKLOADS:
                        for setting in SETTINGS:
                            name = f"threads_{workload}_{condition}_{setting}_{rep}".replace(" ", "_")
                            samples[workload, condition, setting].append(
                                timed(name, workload, setting, scratch, opts.quick)
                            )
    return samples


def paired(samples: dict, key: tuple, other: tuple) -> float:
    """The median over rounds of key's wall time over other's, each round's pair made side by side."""
    return median(a["wall"] / b["wall"] for a, b in zip(samples[key], samples[other], strict=True))


def report(samples: dict, chosen: dict[str, int], opts: argparse.Namespace) -> str:
    lines = [
        f"Threads chosen here: {', '.join(f'{w}: {n}' for w, n in chosen.items())}. "
        f"Medians of {opts.reps} round(s){', --quick (1 epoch, 2,000 images)' if opts.quick else ''}; "
        "wall time, with the training time in brackets.",
        "",
        "| workload | condition | chosen | 1 thread | 2 threads | chosen / 1 thread | chosen / 2 threads |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        for condition in CONDITIONS:
            cells = []
            for setting in SETTINGS:
                runs = samples[workload, condition, setting]
                wall, training = median(r["wall"] for r in runs), median(r["training"] for r in runs)
                cells.append(f"{wall:.1f} s ({training:.2f} s)")
            ratios = [paired(samples, (workload, condition, "chosen"), (workload, condition, s)) for s in SETTINGS]
            lines.append(f"| {workload} | {condition} | {' | '.join(cells)} | {ratios[1]:.2f}x | {ratios[2]:.2f}x |")
    lines += ["", "Beside a busy process, as a multiple of the same run on the quiet machine (wall time):", ""]
    lines += [f"| workload | {' | '.join(SETTINGS)} |", f"|---|{'---|' * len(SETTINGS)}"]
    for workload in WORKLOADS:
        slowdowns = [paired(samples, (workload, "busy", s), (workload, "quiet", s)) for s in SETTINGS]
        lines.append(f"| {workload} | {' | '.join(f'{x:.2f}x' for x in slowdowns)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="rounds, each timing every case once")
    parser.add_argument("--quick", action="store_true", help="one round of 1-epoch runs on 2,000 images")
    opts = parser.parse_args()
    if opts.quick:
        opts.reps = 1
    LOGS.mkdir(parents=True, exist_ok=True)
    chosen = chosen_threads()
    samples = measure(opts)
    text = report(samples, chosen, opts)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "threads.md").write_text(text)
    as_json = {"options": vars(opts), "chosen": chosen, "samples": {" / ".join(k): v for k, v in samples.items()}}
    (RESULTS / "threads.json").write_text(json.dumps(as_json, indent=2))
    print(text)


if __name__ == "__main__":
    main()
