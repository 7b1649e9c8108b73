"""Minibatch SGD by hand, next to torch.optim.SGD; both take parameter groups, each with its own lr.

The trainer zeroes the gradients itself: they are views of one gradient for all models (train.Stack).
"""

import torch


class ScratchSGD:
    """theta <- theta - lr * grad(loss), for every parameter of every group."""

    def __init__(self, param_groups: list[dict]):  # [{"params": [...], "lr": 0.1}, ...], as torch.optim takes them
        self.param_groups = [{"params": list(group["params"]), "lr": group["lr"]} for group in param_groups]

    @torch.no_grad()  # the update itself must not become part of the next step's graph
    def step(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                param -= group["lr"] * param.grad


OPTIMIZERS = {"scratch": ScratchSGD, "torch": torch.optim.SGD}  # optimizer=NAME; conf/optimizer/ has one file each


def build_optimizer(name: str, param_groups: list[dict]):
    """The optimizer for `optimizer=NAME` over parameter groups [{"params": [...], "lr": ...}, ...]."""
    return OPTIMIZERS[name](param_groups)
