"""The figures a run and a sweep leave in MLflow: learning curves, confusion matrix, accuracy vs lr.

Plain Figure objects, not pyplot: no window and no global registry, so a sweep frees each job's figures.
"""

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def learning_curves(history: list[dict]) -> Figure:
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 4), layout="tight")
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
    figure = Figure(figsize=(8, 7), layout="tight")
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
    figure = Figure(figsize=(7, 4.5), layout="tight")
    axes = figure.subplots()
    combos = sorted({(row["loss"], row["labels"]) for row in rows})
    for loss, labels in combos:
        points = sorted((row["lr"], row["test_acc"]) for row in rows if (row["loss"], row["labels"]) == (loss, labels))
        axes.plot(*zip(*points, strict=True), marker="o", label=f"loss={loss}, labels={labels}")
    axes.set_xscale("log")
    axes.set(xlabel="learning rate", ylabel="final test accuracy", title="Test accuracy by learning rate")
    axes.legend()
    return figure
