"""Label noise on the real training labels: how many change, to what, which ones, and what stays clean."""

import pytest
import torch

from softmax_exp.noise import add_label_noise
from softmax_exp.prepare import prepare_group

from .conftest import compose_config, train_all

pytestmark = pytest.mark.fast


@pytest.fixture(scope="module")
def labels(fashion_mnist) -> torch.Tensor:
    return fashion_mnist.train.labels


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.4, 0.9])
def test_exactly_round_p_n_labels_change_each_to_another_class(labels, fraction):
    noisy, changed = add_label_noise(labels, fraction, seed=0)
    assert changed == round(fraction * len(labels))
    assert (noisy != labels).sum().item() == changed  # never to the true class, or fewer would differ
    assert noisy.dtype == labels.dtype and noisy.min() >= 0 and noisy.max() <= 9


def test_round_p_n_is_rounded_not_truncated(labels):
    assert add_label_noise(labels[:7], 0.5, seed=0)[1] == 4  # 3.5 rounds to 4 (Python rounds half to even)
    assert add_label_noise(labels[:3], 0.5, seed=0)[1] == 2  # 1.5 -> 2


def test_the_same_seed_corrupts_the_same_images_the_same_way(labels):
    first, _ = add_label_noise(labels, 0.2, seed=3)
    second, _ = add_label_noise(labels, 0.2, seed=3)
    other, _ = add_label_noise(labels, 0.2, seed=4)
    assert torch.equal(first, second)
    assert not torch.equal((first != labels), (other != labels))  # another seed, other images


def test_more_noise_adds_to_the_images_already_corrupted(labels):
    low, _ = add_label_noise(labels, 0.2, seed=1)
    high, _ = add_label_noise(labels, 0.4, seed=1)
    corrupted_low = low != labels
    assert torch.equal(high[corrupted_low], low[corrupted_low])  # same images, same wrong classes
    assert (high != labels).sum() == 2 * corrupted_low.sum()


def test_a_negative_seed_is_a_seed_too(labels):
    noisy, changed = add_label_noise(labels, 0.2, seed=-1)
    assert changed == 12_000 and (noisy != labels).sum() == 12_000


def test_the_wrong_class_is_drawn_uniformly_among_the_other_nine(labels):
    noisy, _ = add_label_noise(labels, 0.9, seed=0)  # 54,000 changed: 600 per (true, wrong) pair expected
    corrupted = noisy != labels
    pairs = torch.bincount(labels[corrupted] * 10 + noisy[corrupted], minlength=100).view(10, 10)
    assert pairs.diagonal().sum() == 0
    off_diagonal = pairs[~torch.eye(10, dtype=torch.bool)].float()
    assert off_diagonal.min() > 500 and off_diagonal.max() < 700  # +-4 binomial standard deviations


def test_training_with_noise_changes_a_copy_and_never_the_test_labels(fashion_mnist):
    train_before, test_before = fashion_mnist.train.labels.clone(), fashion_mnist.test.labels.clone()
    noisy_cfg, clean_cfg = (
        compose_config(*noise, "data.limit=3000", "epochs=1") for noise in (["data.label_noise=0.2"], [])
    )
    _, (noisy, clean) = prepare_group([noisy_cfg, clean_cfg], fashion_mnist, torch.device("cpu"))
    assert (noisy.labels_changed, clean.labels_changed) == (600, 0)
    assert (noisy.learner.labels != clean.learner.labels).sum() == 600
    result, clean_result = train_all([noisy_cfg, clean_cfg], fashion_mnist)
    assert torch.equal(fashion_mnist.train.labels, train_before)  # shared by every job of the process
    assert torch.equal(fashion_mnist.test.labels, test_before)
    assert result.final["train_acc"] < clean_result.final["train_acc"]  # measured against the labels it was given
