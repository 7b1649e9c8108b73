"""Training seconds per config-epoch of the lock-step trainer, for K configurations trained together.

    python benchmarks/lockstep_epochs.py [--reps 3] [--epochs 3]

K = 1 is a default single run; K = 12 is the grid (loss x labels x lr, one seed, one shared batch order);
K = 60 is the grid x seeds 0-4 (five batch orders). Calls softmax_exp.train.train directly: no start-up,
data loading or tracking, only training plus test evaluation (EpochMetrics.epoch_seconds, the group's
wall time per epoch), divided by K. Prints one JSON line: per K, every timed epoch's seconds per config,
and the median final test accuracy.
"""

import argparse
import itertools
import json
from pathlib import Path
from statistics import median

import torch
from hydra import compose, initialize_config_dir

import softmax_exp.schema  # noqa: F401  registers the schema and the project_root resolver before composing
from softmax_exp import data
from softmax_exp.prepare import prepare_group
from softmax_exp.train import train

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GRID = {"loss": ("scratch", "torch"), "labels": ("hard", "soft"), "lr": (0.01, 0.05, 0.1)}
GROUPS = {1: {"seed": (0,)}, 12: {"seed": (0,)}, 60: {"seed": (0, 1, 2, 3, 4)}}


def overrides(k: int) -> list[list[str]]:
    if k == 1:
        return [[]]  # the defaults
    axes = {**GRID, **GROUPS[k]}
    return [
        [f"{key}={value}" for key, value in zip(axes, values, strict=True)]
        for values in itertools.product(*axes.values())
    ]


def train_configs(cfgs, fashion_mnist):
    """The trainer alone (no tracking) on composed configs, on the CPU."""
    group, prepared = prepare_group(cfgs, fashion_mnist, torch.device("cpu"))
    return train([job.learner for job in prepared], group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed trainings per K, after a warm-up")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed training")
    args = parser.parse_args()
    results = {}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        groups = {k: [compose("config", overrides=[*o, f"epochs={args.epochs}"]) for o in overrides(k)] for k in GROUPS}
        fashion_mnist = data.load(groups[1][0].data.root)  # read from disk once, before any timing
        train_configs([compose("config", overrides=["epochs=1"])], fashion_mnist)  # warm-up, not timed
        for k in GROUPS:
            results[k] = {"config_epoch_seconds": [], "test_acc": None}
        for _ in range(args.reps):  # round robin: a slow spell of the machine spreads over every K
            for k, cfgs in groups.items():
                trained = train_configs(cfgs, fashion_mnist)
                results[k]["config_epoch_seconds"] += [m.epoch_seconds / k for m in trained[0].history]
                results[k]["test_acc"] = median(result.final["test_acc"] for result in trained)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
