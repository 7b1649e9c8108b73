"""The validation split (data.validation): N of the 60,000 training images held out, to choose on.

A sweep that picks its best job or configuration by test accuracy has tuned on the test set, and the test
accuracy it reports is then optimistic. With data.validation=N the sweep chooses on N images it never
trains on (summary.py), and the test set is only reported.

The held-out images are the first N of one fixed permutation of the training set, drawn from a stream of its
own: the same images for every seed and job, and a larger N holds out the same images and more. The images
left keep their order in the files, so data.limit keeps the first of them, and N = 0 is the textbook recipe.
"""

import numpy as np
import torch

from softmax_exp.data import Split

# Not mixed with any seed: every job of every sweep holds out the same images.
VALIDATION_STREAM = 0x76616C6964  # "valid" in ASCII


def held_out_indices(count: int, total: int) -> torch.Tensor:
    """The indices, in increasing order, of the `count` training images held out of `total`."""
    order = np.random.default_rng(VALIDATION_STREAM).permutation(total)
    return torch.from_numpy(np.sort(order[:count]))


def split(train: Split, count: int) -> tuple[Split, Split | None]:
    """The training images left once `count` are held out, in file order, and the held-out ones (None for 0)."""
    if count == 0:
        return train, None
    held_out = held_out_indices(count, len(train.labels))
    kept = torch.ones(len(train.labels), dtype=torch.bool)
    kept[held_out] = False
    return Split(train.images[kept], train.labels[kept]), Split(train.images[held_out], train.labels[held_out])
