"""The figures a run and a sweep leave in MLflow: learning curves, confusion matrix, accuracy vs lr."""

import matplotlib

matplotlib.use("Agg")  # files only, no window: runs headless and in sweeps
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(history: list[dict]) -> Figure:
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_axes.set(xlabel="epoch", ylabel="train loss (cross-entropy, nats)", title="Training loss")
    for key in ("train_acc", "test_acc"):
        acc_axes.plot(epochs, [row[key] for row in history], marker="o", label=key)
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    acc_axes.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(matrix: list[list[int]], classes: tuple[str, ...]) -> Figure:
    figure, axes = plt.subplots(figsize=(8, 7))
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
    figure.tight_layout()
    return figure


def accuracy_vs_lr(rows: list[dict]) -> Figure:
    """Test accuracy against learning rate, one line per loss x labels combination."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    combos = sorted({(row["loss"], row["labels"]) for row in rows})
    for loss, labels in combos:
        points = sorted((row["lr"], row["test_acc"]) for row in rows if (row["loss"], row["labels"]) == (loss, labels))
        axes.plot(*zip(*points, strict=True), marker="o", label=f"loss={loss}, labels={labels}")
    axes.set_xscale("log")
    axes.set(xlabel="learning rate", ylabel="final test accuracy", title="Test accuracy by learning rate")
    axes.legend()
    figure.tight_layout()
    return figure
