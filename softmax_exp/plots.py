"""The figures a run and a sweep leave in MLflow: learning curves, confusion matrix, accuracy vs lr and
learning curves per configuration over its seeds.

Plain Figure objects, not pyplot: no window and no global registry, so a sweep frees each job's figures.
Margins are fixed, not "tight": tight layout measures every label and draws the figure twice, which
doubled the plotting time of every job. This module does not import torch, so that a worker process can
draw a sweep's figures without it.
"""

import functools
import io
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from softmax_exp import forked

ACCURACIES = ("train_acc", "val_acc", "test_acc")  # val_acc: only with a validation set (data.validation)


def accuracies(history: list[dict]) -> tuple[str, ...]:
    """The accuracies a job's history holds: val_acc only where the job held images out."""
    return tuple(key for key in ACCURACIES if history[0].get(key) is not None)


def learning_curves(history: list[dict]) -> Figure:
    figure = Figure(figsize=(10, 4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.91, wspace=0.25)
    loss_axes, acc_axes = figure.subplots(1, 2)
    loss_axes.plot([], [], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="train loss (cross-entropy, nats)", title="Training loss")
    for key in accuracies(history):
        acc_axes.plot([], [], marker="o", label=key)
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    acc_axes.legend()
    for axes in (loss_axes, acc_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    show_learning_curves(figure, history)
    return figure


def show_learning_curves(figure: Figure, history: list[dict]) -> None:
    """Puts a job's history into a figure drawn by learning_curves."""
    epochs = [row["epoch"] for row in history]
    loss_axes, acc_axes = figure.axes
    loss_axes.lines[0].set_data(epochs, [row["train_loss"] for row in history])
    for line, key in zip(acc_axes.lines, accuracies(history), strict=True):
        line.set_data(epochs, [row[key] for row in history])
    for axes in figure.axes:
        axes.relim()
        axes.autoscale_view()


def confusion_matrix(matrix: list[list[int]], classes: tuple[str, ...]) -> Figure:
    figure = Figure(figsize=(8, 7))
    figure.subplots_adjust(left=0.16, right=0.98, bottom=0.17, top=0.95)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, label="test images")
    ticks = range(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right")
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (test set)")
    for true in ticks:
        for predicted in ticks:
            axes.text(predicted, true, "", ha="center", va="center", fontsize=7)
    show_confusion_matrix(figure, matrix)
    return figure


def show_confusion_matrix(figure: Figure, matrix: list[list[int]]) -> None:
    """Puts a job's counts into a figure drawn by confusion_matrix: the colours, and each cell's count."""
    axes = figure.axes[0]
    image = axes.images[0]
    image.set_data(matrix)
    image.autoscale()  # the colour scale runs from this matrix's lowest count to its highest
    peak = max(max(row) for row in matrix)
    for text, count in zip(axes.texts, itertools.chain.from_iterable(matrix), strict=True):
        text.set_text(str(count))
        text.set_color("white" if count > peak / 2 else "black")


def accuracy_vs_lr(groups: pd.DataFrame) -> Figure:
    """Mean final test accuracy against learning rate, a line per configuration less its lr, with the 95% CI
    of each mean as error bars when the sweep has seeds as replicates (group_summary's table)."""
    figure = Figure(figsize=(7, 4.5))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    axes = figure.subplots()
    lines = groups.assign(line=groups["group"].map(without_lr))
    # Scratch and torch losses give the same numbers, so their lines coincide: the scratch lines drawn last,
    # dashed with crosses, keep both visible.
    for line, points in sorted(lines.groupby("line"), key=lambda item: ("loss=scratch" in item[0], item[0])):
        points = points.sort_values("lr")
        mean = points["test_acc_mean"]
        below, above = (mean - points["test_acc_ci95_low"]).fillna(0), (points["test_acc_ci95_high"] - mean).fillna(0)
        style = dict(linestyle="--", marker="x", markersize=9) if "loss=scratch" in line else dict(marker="o")
        axes.errorbar(points["lr"], mean, yerr=[below, above], capsize=3, label=line, **style)
    rates = sorted(groups["lr"].unique())
    axes.set_xscale("log")
    axes.set_xticks(rates, [f"{rate:g}" for rate in rates])
    axes.minorticks_off()
    n = groups["n"].max()
    what = f"mean of {n} seeds, 95% CI" if n > 1 else "one seed each"
    axes.set(xlabel="learning rate", ylabel=f"final test accuracy ({what})", title="Test accuracy by learning rate")
    axes.legend(fontsize=7)
    return figure


def optimization_history(trials: pd.DataFrame) -> Figure:
    """A search's trials in the order asked: each one's validation accuracy (pruned ones at the rung they left
    at, hollow), and the best so far."""
    figure = Figure(figsize=(7, 4.5))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    axes = figure.subplots()
    for state, style in (("COMPLETE", dict(marker="o")), ("PRUNED", dict(marker="o", fillstyle="none"))):
        shown = trials[trials["state"] == state]
        axes.plot(shown["number"], shown["value"], linestyle="none", label=state.lower(), **style)
    complete = trials["value"].where(trials["state"] == "COMPLETE")
    axes.step(trials["number"], complete.cummax(), where="post", label="best so far")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set(
        xlabel="trial", ylabel="validation accuracy (mean over seeds)", title="Search: validation accuracy by trial"
    )
    axes.legend(fontsize=7)
    return figure


def without_lr(group: str) -> str:
    return ",".join(choice for choice in group.split(",") if not choice.startswith("lr=")) or "defaults"


def group_learning_curves(curves: dict[str, dict[str, np.ndarray]]) -> Figure:
    """A panel per configuration: train and test accuracy per epoch, the mean over its seeds as a line and
    their lowest to highest as a band. `curves[group][metric]` holds one row per seed, one column per epoch."""
    columns = min(4, len(curves))
    rows = -(-len(curves) // columns)  # ceiling division
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.4))
    figure.subplots_adjust(left=0.07, right=0.99, bottom=0.08, top=1 - 0.5 / (2.6 * rows + 0.4), hspace=0.45)
    panels = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).flat
    # Curves first: zip then stops without taking a spare panel, and the loop below hides the ones left.
    for (group, metrics), axes in zip(sorted(curves.items()), panels, strict=False):
        for key, values in metrics.items():
            epochs = np.arange(1, values.shape[1] + 1)
            axes.plot(epochs, values.mean(axis=0), label=key)
            axes.fill_between(epochs, values.min(axis=0), values.max(axis=0), alpha=0.25)
        axes.set_title(f"{group} (n={len(values)})", fontsize=7)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for axes in panels:  # the grid's empty cells
        axes.set_visible(False)
    figure.axes[0].legend(fontsize=7)
    figure.suptitle("Accuracy per epoch: mean over seeds, band from lowest to highest", fontsize=9)
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


class JobFigures:
    """A job's two figures, built once per process and shown each job's numbers in turn.

    Building a figure (axes, ticks, a hundred labels) costs about a third of drawing it, and each worker of
    a sweep draws dozens of jobs: the same figures, updated, give the same PNG bytes (tests/test_plots.py).
    """

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = classes  # built for the histories of one set of accuracies (job_figures_of's key)
        self.curves: Figure | None = None
        self.confusion: Figure | None = None

    def pngs(self, history: list[dict], confusion: list[list[int]]) -> dict[str, bytes]:
        if self.curves is None:
            self.curves, self.confusion = learning_curves(history), confusion_matrix(confusion, self.classes)
        else:
            show_learning_curves(self.curves, history)
            show_confusion_matrix(self.confusion, confusion)
        return {"learning_curves.png": png(self.curves), "confusion_matrix.png": png(self.confusion)}


@functools.cache  # one per process and kind of history: a sweep's worker draws its jobs into the same two figures
def job_figures_of(classes: tuple[str, ...], accuracies: tuple[str, ...]) -> JobFigures:
    return JobFigures(classes)


def job_figures(history: list[dict], confusion: list[list[int]], classes: tuple[str, ...]) -> dict[str, bytes]:
    """The PNG files of one job's run, by file name: its learning curves and its test confusion matrix."""
    return job_figures_of(classes, accuracies(history)).pngs(history, confusion)


def png_of(draw: Callable[..., Figure], *args) -> bytes:
    """The PNG file of the figure draw(*args): what a worker process hands back."""
    return png(draw(*args))


@contextmanager
def drawing(workers: int) -> Iterator[Callable]:
    """A map() that draws figures in `workers` forked processes, at once, so that the other cores draw while
    this one writes to MLflow (a job's two figures cost several times its other logging); with no workers,
    Python's own map, here. Workers are forked: they start at once and need nothing but matplotlib."""
    if workers == 0:
        yield map
        return
    with forked.workers(workers) as pool:
        yield pool.map
