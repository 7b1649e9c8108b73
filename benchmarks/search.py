"""A search with successive halving in lock-step, against the same search without pruning and against the grid.

    python benchmarks/search.py [--rounds 3] [--quick]

Runs, one after the other on this machine, each in a store of its own, all tuned on 10,000 held-out training
images (data.validation=10000) with 3 seeds per configuration:
1. `-m experiment=search`: 48 trials in batches of 16, halving at epochs 1 and 3 (a third goes on);
2. the same search with hydra.sweeper.pruner=null;
3. the 12-configuration grid (`-m experiment=grid`, seeds 0-2).
Reports, side by side: wall time, the part of it spent training (the lock-step epochs), and model-epochs
trained (a job's epochs, up to where it was pruned) of 1. against 2. (targets: at most 40% of the model-epochs
and half the wall time, the best validation accuracy within 0.002), and the test accuracy, with its 95% CI
over the seeds, of the configuration each of 1. and 3. chose on validation accuracy, with the trial at which
the search found it. 1. and 2. run in --rounds rounds (3), one right after the other in each: this machine's
speed drifts by 10% within minutes, so the wall-time ratio is each round's, and its median is the one
reported. --quick: 5,000 images, 4 epochs, 12 trials in batches of 6, rungs at 1 and 2.
Writes benchmarks/results/search.{md,json}.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median

from bench import LOGS, RESULTS, run

SEEDS = "hydra.sweeper.seeds=[0,1,2]"
# A lock-step group's line after each epoch (jobs.report_group_epoch): its seconds are the epoch's training and
# evaluation, for the whole group.
GROUP_EPOCH = re.compile(r"epoch\s+\d+\s+jobs training=\d+ .* seconds=([\d.]+)")
TARGETS = {"model_epochs": 0.40, "wall": 0.5, "best_val_acc": 0.002}


def chosen(store: Path) -> dict:
    """The sweep's choice, as its parent run holds it, and the model-epochs its jobs trained; read in a child
    process, so that this one stays free of MLflow."""
    script = """
import json, sys
from mlflow.tracking import MlflowClient
c = MlflowClient(sys.argv[1])
runs = c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=10000)
parent = next(r for r in runs if "sweep_dir" in r.data.tags)
jobs = [r for r in runs if "sweep_dir" not in r.data.tags]
epochs = sum(int(r.data.tags.get("pruned_at_epoch", r.data.params["epochs"])) for r in jobs)
print(json.dumps({"metrics": parent.data.metrics, "tags": parent.data.tags, "model_epochs": epochs, "jobs": len(jobs)}))
"""
    out = subprocess.run([sys.executable, "-c", script, f"sqlite:///{store}/mlflow.db"], capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(folder: str, name: str, overrides: list[str], round_: int) -> dict:
    """One sweep, in a store of its own: its wall and training seconds, its choice and its model-epochs."""
    store = Path(folder, f"{name.replace(' ', '_')}_{round_}")
    where = [f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.sweep.dir={store}/sweep"]
    child = run(f"search_{name.replace(' ', '_')}_{round_}", ["-m", "softmax_exp", "-m", *overrides, *where])
    return {
        "command": "python -m softmax_exp -m " + " ".join(overrides),
        "seconds": child.seconds,
        "training_seconds": sum(float(seconds) for seconds in GROUP_EPOCH.findall(child.output)),
        **chosen(store),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 images, 4 epochs, 12 trials: a smoke check")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the two searches, one after the other")
    opts = parser.parse_args()
    scale = []
    if opts.quick:
        scale = ["data.limit=5000", "epochs=4", "hydra.sweeper.n_trials=12", "hydra.sweeper.batch=6"]
    rungs = ["hydra.sweeper.rungs=[1,2]"] if opts.quick else []
    LOGS.mkdir(parents=True, exist_ok=True)
    searches = {
        "halving": ["experiment=search", SEEDS, *scale, *rungs],
        "no pruning": ["experiment=search", SEEDS, "hydra.sweeper.pruner=null", *scale],
    }
    grid_overrides = ["experiment=grid", "seed=0,1,2", "data.validation=10000"]
    grid_overrides += [s for s in scale if "sweeper" not in s]
    rounds = []  # each: both searches, run one after the other, so that they share the machine's speed of the time
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(opts.rounds):
            rounds.append({name: measure(folder, name, overrides, round_) for name, overrides in searches.items()})
        grid = measure(folder, "grid", grid_overrides, 0)

    halving, full = rounds[0]["halving"], rounds[0]["no pruning"]  # the same trials and numbers in every round
    assert all(r[name]["model_epochs"] == rounds[0][name]["model_epochs"] for r in rounds for name in searches)
    walls = sorted(r["halving"]["seconds"] / r["no pruning"]["seconds"] for r in rounds)
    trainings = sorted(r["halving"]["training_seconds"] / r["no pruning"]["training_seconds"] for r in rounds)
    ratios = {
        "model_epochs": halving["model_epochs"] / full["model_epochs"],
        "wall": median(walls),
        "training": median(trainings),
        "best_val_acc": abs(halving["metrics"]["best_trial_val_acc"] - full["metrics"]["best_trial_val_acc"]),
    }
    met = {key: ratios[key] <= TARGETS[key] for key in TARGETS}

    def interval(metrics: dict) -> str:
        low, high = metrics.get("best_config_test_acc_ci95_low"), metrics.get("best_config_test_acc_ci95_high")
        return f"{low:.4f} … {high:.4f}" if low is not None else "-"

    def seconds(name: str, key: str) -> str:
        return " / ".join(f"{r[name][key]:.1f}" for r in rounds)

    lines = [
        "| sweep | wall s, each round | training s | model-epochs | best val_acc | its test_acc (95% CI over 3 seeds) "
        "| chosen |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, sweep in (("halving", halving), ("no pruning", full)):
        m, tags = sweep["metrics"], sweep["tags"]
        lines.append(
            f"| search, {name} | {seconds(name, 'seconds')} | {seconds(name, 'training_seconds')} | "
            f"{sweep['model_epochs']} | "
            f"{m['best_trial_val_acc']:.4f} | {m['best_config_test_acc_mean']:.4f} ({interval(m)}) | "
            f"trial #{tags['best_trial']} (found after {int(tags['best_trial']) + 1} trials): "
            f"{tags['best_trial_params']} |"
        )
    gm = grid["metrics"]
    lines.append(
        f"| grid, 12 configurations | {grid['seconds']:.1f} | {grid['training_seconds']:.1f} | "
        f"{grid['model_epochs']} | "
        f"{gm['best_config_val_acc_mean']:.4f} | {gm['best_config_test_acc_mean']:.4f} ({interval(gm)}) | "
        f"{grid['tags']['best_config']} |"
    )
    rest = [(r["halving"]["seconds"] - r["halving"]["training_seconds"], r["no pruning"]["seconds"]
             - r["no pruning"]["training_seconds"]) for r in rounds]  # fmt: skip
    lines += [
        "",
        f"- halving against no pruning: {ratios['model_epochs']:.2f} of the model-epochs (target ≤ 0.40, "
        f"{'met' if met['model_epochs'] else 'NOT met'}), {ratios['wall']:.2f} of the wall time, the median of "
        f"{len(rounds)} rounds ({' / '.join(f'{w:.2f}' for w in walls)}; target ≤ 0.5, "
        f"{'met' if met['wall'] else 'NOT met'}), best validation accuracy {ratios['best_val_acc']:.4f} apart "
        f"(target ≤ 0.002, {'met' if met['best_val_acc'] else 'NOT met'})",
        f"- training alone (the lock-step epochs, evaluation included): halving takes {ratios['training']:.2f} of the "
        f"unpruned search's (median); the rest of the wall time, "
        f"{' / '.join(f'{h:.1f} s against {f:.1f} s' for h, f in rest)}, is each job's own: its config composed "
        "by Hydra, its folder and run, its results logged",
        *(f"- `{sweep['command']}`" for sweep in (halving, full, grid)),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = {"rounds": rounds, "grid": grid, "ratios": ratios, "met": met}
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
