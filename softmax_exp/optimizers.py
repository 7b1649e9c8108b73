"""Minibatch SGD by hand, next to torch.optim.SGD; both expose step() and zero_grad()."""

from collections.abc import Iterable

import torch


class ScratchSGD:
    """theta <- theta - lr * grad(loss), for every parameter."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float):
        self.params = list(params)
        self.lr = lr

    @torch.no_grad()  # the update itself must not become part of the next step's graph
    def step(self) -> None:
        for param in self.params:
            param -= self.lr * param.grad

    def zero_grad(self) -> None:
        # backward() adds into .grad, so last step's gradient must go before the next backward.
        for param in self.params:
            param.grad = None


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float):
    if name == "scratch":
        return ScratchSGD(params, lr)
    return torch.optim.SGD(params, lr=lr)
