"""Softmax regression: one linear layer from 784 pixels to 10 class scores (logits).

The softmax itself lives in the loss, which is how both torch and the textbook train it.
"""

import torch
from torch import nn

PIXELS, CLASSES = 28 * 28, 10
INIT_STD = 0.01  # weights ~ N(0, 0.01^2), as in the textbook


def build_model(seed: int) -> nn.Linear:
    """Linear(784, 10) with seeded small random weights and zero bias, created on the CPU.

    A plain nn.Linear takes a batch of 784-pixel rows, so a saved model needs no code of ours to load.
    """
    generator = torch.Generator().manual_seed(seed)
    model = nn.Linear(PIXELS, CLASSES)
    with torch.no_grad():
        model.weight.normal_(0.0, INIT_STD, generator=generator)
        model.bias.zero_()
    return model
