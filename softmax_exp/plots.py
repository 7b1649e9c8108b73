"""The figures a run and a sweep leave in MLflow: learning curves, confusion matrix, accuracy vs lr.

Plain Figure objects, not pyplot: no window and no global registry, so a sweep frees each job's figures.
Margins are fixed, not "tight": tight layout measures every label and draws the figure twice, which
doubled the plotting time of every job. This module needs matplotlib alone, so that a worker process can
draw a sweep's figures without importing torch.
"""

import io

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def learning_curves(history: list[dict]) -> Figure:
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4))
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.91, wspace=0.25)
    loss_axes, acc_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="train loss (cross-entropy, nats)", title="Training loss")
    for key in ("train_acc", "test_acc"):
        acc_axes.plot(epochs, [row[key] for row in history], marker="o", label=key)
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    acc_axes.legend()
    for axes in (loss_axes, acc_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    return figure


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
    peak = max(max(row) for row in matrix)
    for true, row in enumerate(matrix):
        for predicted, count in enumerate(row):
            color = "white" if count > peak / 2 else "black"
            axes.text(predicted, true, str(count), ha="center", va="center", fontsize=7, color=color)
    return figure


def accuracy_vs_lr(rows: list[dict]) -> Figure:
    """Test accuracy against learning rate, one line per loss x labels combination."""
    figure = Figure(figsize=(7, 4.5))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    axes = figure.subplots()
    # Scratch and torch losses give the same numbers, so their lines coincide: a color per labels, and the
    # scratch line dashed on top of the solid torch one, keeps both visible.
    style = {"torch": dict(linestyle="-", marker="o"), "scratch": dict(linestyle="--", marker="x", markersize=9)}
    color = {"hard": "tab:blue", "soft": "tab:orange"}
    combos = sorted({(row["loss"], row["labels"]) for row in rows}, key=lambda combo: (combo[0] != "torch", combo))
    for loss, labels in combos:
        points = sorted((row["lr"], row["test_acc"]) for row in rows if (row["loss"], row["labels"]) == (loss, labels))
        axes.plot(
            *zip(*points, strict=True), label=f"loss={loss}, labels={labels}", color=color.get(labels), **style[loss]
        )
    rates = sorted({row["lr"] for row in rows})
    axes.set_xscale("log")
    axes.set_xticks(rates, [f"{rate:g}" for rate in rates])
    axes.minorticks_off()
    axes.set(xlabel="learning rate", ylabel="final test accuracy", title="Test accuracy by learning rate")
    axes.legend()
    return figure


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def job_figures(history: list[dict], confusion: list[list[int]], classes: tuple[str, ...]) -> dict[str, bytes]:
    """The PNG files of one job's run, by file name: its learning curves and its test confusion matrix."""
    return {
        "learning_curves.png": png(learning_curves(history)),
        "confusion_matrix.png": png(confusion_matrix(confusion, classes)),
    }
