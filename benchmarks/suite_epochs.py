"""Seconds per epoch of the suite's trainer, for each loss x optimizer (labels=hard, every other key default).

    python benchmarks/suite_epochs.py [--reps 3]

Calls softmax_exp.train.train directly, so start-up, data loading and tracking are not in the numbers: only
training plus test evaluation, as EpochMetrics.epoch_seconds measures them. bench.py runs this in a child
process (see bench.py for why); it prints one JSON line: per combination, every timed epoch's seconds and
the final test accuracy after the configured epochs.
"""

import argparse
import json
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import softmax_exp.schema  # noqa: F401  registers the schema and the project_root resolver before composing
from softmax_exp import data
from softmax_exp.prepare import prepare_group
from softmax_exp.train import train

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
COMBOS = [("torch", "torch"), ("torch", "scratch"), ("scratch", "torch"), ("scratch", "scratch")]  # default first


def train_configs(cfgs, fashion_mnist):
    """The trainer alone (no tracking) on composed configs, on the CPU."""
    group, prepared = prepare_group(cfgs, fashion_mnist, torch.device("cpu"))
    return train([job.learner for job in prepared], group)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed training runs per combination, after a warm-up")
    args = parser.parse_args()

    results = {}
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        configs = {}
        for loss, optimizer in COMBOS:
            name = f"loss={loss} optimizer={optimizer}"
            overrides = [f"loss={loss}", f"optimizer={optimizer}", "labels=hard"]
            configs[name] = cfg = compose("config", overrides=overrides)
            fashion_mnist = data.load(cfg.data.root)  # cached: read from disk once, before any timing
            train_configs([compose("config", overrides=[*overrides, "epochs=1"])], fashion_mnist)  # warm-up
            results[name] = {"epoch_seconds": [], "epochs": cfg.epochs}
        # Round robin, so that a slow spell of the machine spreads over every combination, not just one.
        for _ in range(args.reps):
            for name, cfg in configs.items():
                (result,) = train_configs([cfg], fashion_mnist)
                results[name]["epoch_seconds"] += [metrics.epoch_seconds for metrics in result.history]
                results[name]["test_acc"] = result.final["test_acc"]  # seeded: every rep ends at the same accuracy
    print(json.dumps(results))


if __name__ == "__main__":
    main()
