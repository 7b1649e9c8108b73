"""Label noise (data.label_noise): a fraction of the training labels replaced by a wrong class.

Which images are corrupted, and the wrong class each one gets, depend only on the run's seed and the
labels: not on the loss, the targets or anything else, so runs that differ in those see the same noise.
For a given seed the images corrupted at p = 0.2 are among those corrupted at p = 0.4, with the same
wrong classes, so a sweep over p adds noise rather than drawing it afresh.
"""

import numpy as np
import torch

from softmax_exp.model import CLASSES

# Mixed with the seed into a stream of its own: the trainer's shuffling, seeded by the same number with
# torch's generator, would otherwise pick the first batches of epoch 1 as the corrupted images.
NOISE_STREAM = 0x6E6F697365  # "noise" in ASCII


def add_label_noise(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, int]:
    """Labels with round(fraction * N) of them replaced by a uniformly drawn other class; and that count.

    The labels given are not changed (the test set and other jobs share them): the noisy ones are a copy.
    """
    count = round(fraction * len(labels))
    if count == 0:
        return labels, 0
    rng = np.random.default_rng([NOISE_STREAM, seed % 2**64])  # % 2**64: a negative seed, read as torch reads it
    corrupted = torch.from_numpy(rng.permutation(len(labels))[:count]).to(labels.device)
    # Adding 1..K-1 modulo K gives each of the K - 1 other classes with equal chance, never the true one.
    offsets = torch.from_numpy(rng.integers(1, CLASSES, size=len(labels))).to(labels.device)[corrupted]
    noisy = labels.clone()
    noisy[corrupted] = (labels[corrupted] + offsets) % CLASSES
    return noisy, count
