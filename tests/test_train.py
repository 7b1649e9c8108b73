"""Real training on Fashion-MNIST: it learns, it is reproducible, and scratch matches torch."""

import math
import re

import pytest
import torch

from softmax_exp import evaluate, validation
from softmax_exp.data import to_unit_interval
from softmax_exp.errors import DivergedError
from softmax_exp.losses import EXP_OVERFLOW
from softmax_exp.model import build_model
from softmax_exp.prepare import lockstep_key, prepare_group

from .conftest import compose_config, train_all

QUICK = ("data.limit=5000", "epochs=2")  # every comparison holds from the first epochs on


def train_one(cfg, fashion_mnist, **callbacks):
    (result,) = train_all([cfg], fashion_mnist, **callbacks)
    return result


def history(fashion_mnist, *overrides):
    return [vars(m) for m in train_one(compose_config(*overrides), fashion_mnist).history]


def test_a_short_run_learns_well_above_chance(fashion_mnist):
    result = train_one(compose_config("data.limit=5000", "epochs=2"), fashion_mnist)
    assert [m.epoch for m in result.history] == [1, 2]
    assert result.final["test_acc"] > 0.65  # chance is 0.10
    assert result.history[1].train_loss < result.history[0].train_loss


@pytest.mark.fast
def test_the_same_config_gives_the_same_numbers(fashion_mnist):
    first, second = history(fashion_mnist, *QUICK), history(fashion_mnist, *QUICK)
    for a, b in zip(first, second, strict=True):
        assert {k: v for k, v in a.items() if k != "epoch_seconds"} == {
            k: v for k, v in b.items() if k != "epoch_seconds"
        }


def assert_same_metrics(first, second):
    for a, b in zip(first, second, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-3)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-3)


@pytest.mark.fast
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_scratch_loss_matches_torch_loss_epoch_by_epoch(fashion_mnist, labels):
    assert_same_metrics(
        history(fashion_mnist, *QUICK, f"labels={labels}", "loss=scratch"),
        history(fashion_mnist, *QUICK, f"labels={labels}", "loss=torch"),
    )


@pytest.mark.fast
def test_scratch_sgd_matches_torch_sgd_epoch_by_epoch(fashion_mnist):
    assert_same_metrics(
        history(fashion_mnist, *QUICK, "optimizer=scratch"), history(fashion_mnist, *QUICK, "optimizer=torch")
    )


def test_a_diverging_model_stops_at_that_epoch_and_the_others_train_on_unchanged(fashion_mnist):
    jobs = [["lr=0.1"], ["lr=1e38"], ["lr=0.05", "seed=1"]]
    cfgs = [compose_config(*QUICK, *overrides) for overrides in jobs]
    seen = []
    results = train_all(cfgs, fashion_mnist, on_epoch=lambda k, metrics: seen.append(k))
    assert isinstance(results[1].error, DivergedError)
    assert str(results[1].error).startswith("training diverged at epoch 1: train_loss=nan with lr=1e+38")
    assert [m.epoch for m in results[1].history] == [1] and seen.count(1) == 1  # the failing epoch is reported
    for k in (0, 2):
        assert results[k].error is None and seen.count(k) == 2
        assert_same_metrics([vars(m) for m in results[k].history], history(fashion_mnist, *QUICK, *jobs[k]))


@pytest.mark.fast
def test_models_in_lockstep_get_the_numbers_they_get_alone(fashion_mnist):
    """Every loss x optimizer x labels combination and two seeds, trained together and one by one."""
    combos = [
        (f"loss={loss}", f"optimizer={optimizer}", f"labels={labels}", f"seed={seed}")
        for loss in ("scratch", "torch")
        for optimizer in ("scratch", "torch")
        for labels in ("hard", "soft")
        for seed in (0, 1)
    ]
    small = ("data.limit=2000", "epochs=2", "lr=0.05")  # 16 models, each also alone
    together = train_all([compose_config(*small, *combo) for combo in combos], fashion_mnist)
    for combo, result in zip(combos, together, strict=True):
        assert_same_metrics([vars(m) for m in result.history], history(fashion_mnist, *small, *combo))
    # The labels and the seed change the numbers; the two implementations of loss and optimizer agree.
    assert len({result.final["train_loss"] for result in together}) >= 4


def test_learning_rates_and_optimizers_mixed_within_and_across_seeds_stay_each_models_own(fashion_mnist):
    """Models that step alike share an optimizer's parameter group, across seeds where their rows agree: two
    learning rates per optimizer for seed 0, the other way round for seed 1, and a seed with one model only."""
    combos = [
        (f"optimizer={optimizer}", f"lr={lr if seed == 0 else 0.15 - lr}", f"seed={seed}", f"labels={labels}")
        for seed in (0, 1)
        for optimizer in ("scratch", "torch")
        for lr in (0.05, 0.1)
        for labels in ("hard", "soft")
    ] + [("lr=0.2", "seed=2", "labels=soft")]
    small = ("data.limit=2000", "epochs=2")  # 17 models, each also alone
    together = train_all([compose_config(*small, *combo) for combo in combos], fashion_mnist)
    for combo, result in zip(combos, together, strict=True):
        assert_same_metrics([vars(m) for m in result.history], history(fashion_mnist, *small, *combo))
    # Each seed x lr x labels its own numbers (the two optimizers' are equal but for rounding).
    assert len({result.final["train_loss"] for result in together}) >= 2 * 2 * 2 + 1


@pytest.mark.fast
def test_only_jobs_that_step_through_the_same_data_alike_share_a_lockstep_group():
    cpu = torch.device("cpu")
    key = lockstep_key(compose_config(*QUICK), cpu)
    assert lockstep_key(compose_config(*QUICK, "lr=0.05", "loss=scratch", "seed=3", "labels=soft"), cpu) == key
    for other in ("batch_size=128", "epochs=3", "data.limit=4000", "data.pixel_scale=255", "data.validation=1000"):
        assert lockstep_key(compose_config(*QUICK, other), cpu) != key, other
    assert lockstep_key(compose_config(*QUICK), torch.device("cuda")) != key


@pytest.mark.fast
def test_the_held_out_images_are_the_same_for_every_seed_and_never_trained_on(fashion_mnist):
    held_out = validation.held_out_indices(1000, 60_000)
    assert len(held_out.unique()) == 1000 and held_out.equal(validation.held_out_indices(1000, 60_000))
    assert set(validation.held_out_indices(500, 60_000).tolist()) < set(held_out.tolist())  # more N, more held out
    held_out_set = set(held_out.tolist())
    left = [i for i in range(60_000) if i not in held_out_set]  # in file order: data.limit keeps the first
    train = fashion_mnist.train
    noisy = ("data.validation=1000", "data.limit=5000", "data.label_noise=0.2")
    cfgs = [compose_config(*noisy, f"seed={seed}") for seed in (0, 1)]
    group, prepared = prepare_group(cfgs, fashion_mnist, torch.device("cpu"))
    assert group.validation_images.equal(train.images[held_out]) and group.validation_labels.equal(
        train.labels[held_out]
    )
    assert group.images.equal(train.images[left[:5000]])  # all the trainer steps through
    for job in prepared:  # label noise is drawn among the training images alone
        assert (job.learner.labels != train.labels[left[:5000]]).sum() == job.labels_changed == 1000
    whole, _ = prepare_group([compose_config("data.validation=1000")], fashion_mnist, torch.device("cpu"))
    assert whole.images.equal(train.images[left])  # data.limit=null: the 59,000 left
    textbook, _ = prepare_group([compose_config(*QUICK)], fashion_mnist, torch.device("cpu"))  # data.validation=0
    assert textbook.validation_images is None and textbook.images.equal(train.images[:5000])


@pytest.mark.fast
def test_each_epoch_measures_every_model_on_the_held_out_images(fashion_mnist):
    cfgs = [compose_config(*QUICK, "data.validation=2000", f"lr={lr}") for lr in (0.05, 0.2)]
    group, _ = prepare_group(cfgs, fashion_mnist, torch.device("cpu"))
    results = train_all(cfgs, fashion_mnist)
    for result in results:
        assert all(
            m.val_acc is not None and f"  val_acc={m.val_acc:.4f}  test_acc=" in m.line() for m in result.history
        )
        (predicted,) = evaluate.predict([result.model], group.validation_images).T
        assert result.final["val_acc"] == (predicted == group.validation_labels).sum().item() / 2000
    assert results[0].final["val_acc"] != results[1].final["val_acc"]
    (alone,) = train_all([compose_config(*QUICK)], fashion_mnist)  # no validation set: no val_acc anywhere
    assert (
        alone.history[-1].val_acc is None and "val_acc" not in alone.final and "val_acc" not in alone.history[-1].line()
    )


def test_max_abs_logit_is_the_largest_logit_of_the_epoch(fashion_mnist):
    """One step over 3,000 images: the logits seen are those of the initial weights, computed here apart."""
    result = train_one(compose_config("data.limit=3000", "batch_size=3000", "epochs=1"), fashion_mnist)
    logits = build_model(seed=0)(to_unit_interval(fashion_mnist.train.images[:3000]))
    assert result.history[0].max_abs_logit == pytest.approx(logits.abs().max().item(), rel=1e-6)


def test_naive_loss_trains_like_scratch_while_logits_stay_small(fashion_mnist):
    naive = history(fashion_mnist, *QUICK, "loss=naive")
    assert_same_metrics(naive, history(fashion_mnist, *QUICK, "loss=scratch"))
    assert max(m["max_abs_logit"] for m in naive) < EXP_OVERFLOW


def test_raw_pixels_break_the_naive_loss_in_epoch_1_and_not_the_stable_ones(fashion_mnist):
    raw = ("data.pixel_scale=255", "data.limit=3000", "epochs=2")
    naive = train_one(compose_config(*raw, "loss=naive"), fashion_mnist)
    assert re.match(
        "training diverged at epoch 1: train_loss=nan, from exp overflow in the unshifted softmax", str(naive.error)
    )
    assert [m.epoch for m in naive.history] == [1] and naive.history[0].max_abs_logit > EXP_OVERFLOW
    for loss in ("scratch", "torch"):
        stable = history(fashion_mnist, *raw, f"loss={loss}")
        assert all(math.isfinite(m["train_loss"]) and m["max_abs_logit"] > 1000 for m in stable)


def test_default_ten_epochs_reach_the_textbook_accuracy(fashion_mnist):
    """Each loss x labels on the full data, trained as one lock-step group: each model gets the numbers it gets
    alone (test_models_in_lockstep_get_the_numbers_they_get_alone), and one group costs far less than four runs."""
    combos = [(f"loss={loss}", f"labels={labels}") for loss in ("scratch", "torch") for labels in ("hard", "soft")]
    for combo, result in zip(
        combos, train_all([compose_config(*combo) for combo in combos], fashion_mnist), strict=True
    ):
        assert len(result.history) == 10, combo
        assert result.final["train_acc"] > 0.84, combo
        assert max(m.test_acc for m in result.history) >= 0.83, combo
        assert result.final["test_acc"] >= 0.81, combo
