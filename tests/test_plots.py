"""Figures: a sweep's workers draw each job into the same two figures, which must give what fresh ones give."""

import pytest

from softmax_exp import plots
from softmax_exp.data import CLASSES


def history(epochs: int, shift: float) -> list[dict]:
    return [
        {"epoch": e, "train_loss": 1 / e + shift, "train_acc": 0.7 + shift * e / 10, "test_acc": 0.69 + shift}
        for e in range(1, epochs + 1)
    ]


def counts(scale: int) -> list[list[int]]:
    return [[(true * 7 + predicted * 3) % 11 * scale + (900 if true == predicted else 0) for predicted in range(10)]
            for true in range(10)]  # fmt: skip


def test_reused_figures_give_the_bytes_of_fresh_ones():
    figures = plots.JobFigures(CLASSES)
    jobs = [(history(10, 0.0), counts(3)), (history(3, 0.05), counts(40)), (history(10, 0.1), counts(1))]
    drawn = [figures.pngs(*job) for job in jobs]
    for (curves, confusion), pngs in zip(jobs, drawn, strict=True):
        assert pngs["learning_curves.png"] == plots.png(plots.learning_curves(curves))
        assert pngs["confusion_matrix.png"] == plots.png(plots.confusion_matrix(confusion, CLASSES))
    assert len({pngs["confusion_matrix.png"] for pngs in drawn}) == 3  # each job's own numbers
    assert figures.confusion.axes[0].texts[0].get_text() == str(counts(1)[0][0])


@pytest.mark.fast
def test_a_job_with_a_validation_set_draws_its_accuracy_between_train_and_test():
    plain = [{**row, "val_acc": None} for row in history(3, 0.0)]  # a job without one, as the trainer gives it
    validated = [{**row, "val_acc": row["test_acc"] + 0.01} for row in history(3, 0.05)]
    assert [line.get_label() for line in plots.learning_curves(validated).axes[1].lines] == [
        "train_acc", "val_acc", "test_acc"
    ]  # fmt: skip
    assert [line.get_label() for line in plots.learning_curves(plain).axes[1].lines] == ["train_acc", "test_acc"]
    for curves in (validated, plain, validated):  # one process draws both kinds, each into figures of its kind
        drawn = plots.job_figures(curves, counts(1), CLASSES)["learning_curves.png"]
        assert drawn == plots.png(plots.learning_curves(curves))
