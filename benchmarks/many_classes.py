"""How the cost of softmax regression grows with the number of classes K (the chapter's fourth caution).

    python benchmarks/many_classes.py [--budget 2] [--update-docs]

Times one forward and backward pass of a linear layer (784 -> K) plus softmax cross-entropy, the batch
mean of each loss (naive, scratch, torch: softmax_exp/losses.py), on a batch of 256 real Fashion-MNIST
images with labels drawn uniformly from the K classes, for K = 10 ... 100,000. Each measurement is the
median over repetitions after a warm-up; the three losses are timed round robin, so a slow spell of a
shared machine lands on all three. Writes benchmarks/results/many_classes.{json,md,png} (git-ignored);
--update-docs also writes the plot to docs/many_classes.png, the copy docs/cautions.md shows.
"""

import argparse
import json
import math
import os
import platform
import time
from datetime import datetime
from pathlib import Path
from statistics import median

import torch
from matplotlib.figure import Figure

from softmax_exp import data
from softmax_exp.losses import build_loss

BENCH_DIR = Path(__file__).resolve().parent
RESULTS, DOCS_PLOT = BENCH_DIR / "results", BENCH_DIR.parent / "docs" / "many_classes.png"
CLASS_COUNTS = (10, 100, 1_000, 10_000, 100_000)
LOSSES = ("naive", "scratch", "torch")
BATCH, PIXELS = 256, 784


def step_seconds(weight, bias, pixels, labels, loss_fn) -> float:
    """One forward and backward pass: logits = x W^T + b, the batch mean loss, its gradient."""
    weight.grad = bias.grad = None
    start = time.perf_counter()
    loss = loss_fn(torch.nn.functional.linear(pixels, weight, bias), labels).mean()
    loss.backward()
    return time.perf_counter() - start


def measure(classes: int, pixels: torch.Tensor, budget: float, min_reps: int, max_reps: int) -> dict:
    """Median seconds per pass of each loss at K = `classes`; repetitions fill about `budget` seconds per loss."""
    generator = torch.Generator().manual_seed(classes)
    weight = (torch.randn(classes, PIXELS, generator=generator) * 0.01).requires_grad_()  # the textbook's init
    bias = torch.zeros(classes, requires_grad=True)
    labels = torch.randint(0, classes, (BATCH,), generator=generator)
    losses = {name: build_loss(name) for name in LOSSES}
    warmup = {name: step_seconds(weight, bias, pixels, labels, fn) for name, fn in losses.items()}
    reps = max(min_reps, min(max_reps, math.ceil(budget / max(warmup.values()))))
    samples = {name: [] for name in LOSSES}
    for _ in range(reps):  # round robin over the losses
        for name, fn in losses.items():
            samples[name].append(step_seconds(weight, bias, pixels, labels, fn))
    return {name: {"median_seconds": median(times), "samples": times} for name, times in samples.items()}


def growth_exponent(results: dict, loss: str, small: int, large: int) -> float:
    """b in time ~ K^b between two class counts: the slope of the log-log plot."""
    ratio = results[large][loss]["median_seconds"] / results[small][loss]["median_seconds"]
    return math.log(ratio) / math.log(large / small)


def plot(results: dict, note: str) -> Figure:
    figure = Figure(figsize=(6, 4), dpi=100)
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.91)
    axes = figure.subplots()
    styles = {"naive": dict(marker="s"), "scratch": dict(marker="o"), "torch": dict(marker="x", linestyle="--")}
    for loss in LOSSES:
        times_ms = [results[k][loss]["median_seconds"] * 1e3 for k in CLASS_COUNTS]
        axes.plot(CLASS_COUNTS, times_ms, label=f"loss={loss}", **styles[loss])
    # A line of slope 1 through the largest K of the torch loss: cost proportional to K.
    end = results[CLASS_COUNTS[-1]]["torch"]["median_seconds"] * 1e3
    axes.plot(CLASS_COUNTS, [end * k / CLASS_COUNTS[-1] for k in CLASS_COUNTS], color="grey", linewidth=0.8,
              linestyle=":", label="proportional to K")  # fmt: skip
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set(
        xlabel="classes K", ylabel="ms per forward + backward pass", title="Linear 784 -> K + softmax CE, batch 256"
    )
    figure.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="grey")
    axes.legend()
    return figure


def markdown(results: dict, sentence: str, machine: dict) -> str:
    lines = [
        "| K | naive (ms) | scratch (ms) | torch (ms) | reps |",
        "|---|---|---|---|---|",
    ]
    for k in CLASS_COUNTS:
        times = [f"{results[k][loss]['median_seconds'] * 1e3:.3f}" for loss in LOSSES]
        lines.append(f"| {k:,} | {' | '.join(times)} | {len(results[k]['torch']['samples'])} |")
    info = ", ".join(f"{key} {value}" for key, value in machine.items())
    return "\n".join([*lines, "", sentence, "", f"Machine: {info}.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed passes per loss and K (about)")
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=200)
    parser.add_argument("--update-docs", action="store_true", help=f"also write the plot to {DOCS_PLOT}")
    args = parser.parse_args()

    fashion_mnist = data.load(str(BENCH_DIR.parent / "data"))
    pixels = data.to_unit_interval(fashion_mnist.train.images[:BATCH])
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    results = {}
    for classes in CLASS_COUNTS:
        results[classes] = measure(classes, pixels, args.budget, args.min_reps, args.max_reps)
        row = ", ".join(f"{loss} {results[classes][loss]['median_seconds'] * 1e3:.3f} ms" for loss in LOSSES)
        print(f"K={classes:>7,}: {row}", flush=True)
    machine = {
        "date": datetime.now().strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load average before/after": f"{load_before:.2f}/{os.getloadavg()[0]:.2f}",
        "seconds": f"{time.perf_counter() - started:.0f}",
    }
    slopes = {loss: growth_exponent(results, loss, 10_000, 100_000) for loss in LOSSES}
    flat = {loss: growth_exponent(results, loss, 10, 100) for loss in LOSSES}
    large = results[CLASS_COUNTS[-1]]
    sentence = (
        f"From K = 10,000 to 100,000 the time grows as K^{min(slopes.values()):.2f} to K^{max(slopes.values()):.2f}, "
        "about proportional to K (slope 1 on the plot): the 256 x 784 x K matrix products and the softmax over "
        f"K columns do all the work, and the weights alone are {PIXELS * CLASS_COUNTS[-1] * 4 / 1e6:.0f} MB at "
        f"K = {CLASS_COUNTS[-1]:,}. From K = 10 to 100 it grows only as K^{min(flat.values()):.2f} to "
        f"K^{max(flat.values()):.2f}: there the fixed cost of a pass (autograd, the 784 inputs) outweighs the K "
        f"columns. At K = {CLASS_COUNTS[-1]:,} the hand-written losses take "
        f"{large['naive']['median_seconds'] / large['torch']['median_seconds']:.2f}x (naive) and "
        f"{large['scratch']['median_seconds'] / large['torch']['median_seconds']:.2f}x (scratch) the time of "
        "torch's fused cross-entropy, which makes fewer passes over the 256 x K logits."
    )
    print(sentence)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {"results": {str(k): v for k, v in results.items()}, "slopes": slopes, "machine": machine}
    (RESULTS / "many_classes.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "many_classes.md").write_text(markdown(results, sentence, machine))
    figure = plot(results, f"median of repeated passes; {machine['date']}, {machine['cpu']}, torch {torch.__version__}")
    figure.savefig(RESULTS / "many_classes.png")
    if args.update_docs:
        DOCS_PLOT.parent.mkdir(exist_ok=True)
        figure.savefig(DOCS_PLOT)
    print(f"wrote {RESULTS}/many_classes.{{json,md,png}}" + (f" and {DOCS_PLOT}" if args.update_docs else ""))


if __name__ == "__main__":
    main()
