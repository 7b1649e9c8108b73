"""The hand-written softmax and cross-entropy against torch's, values and gradients."""

import ast
import inspect
import math

import pytest
import torch
from torch import nn

from softmax_exp.labels import smooth
from softmax_exp.losses import (
    EXP_OVERFLOW,
    cross_entropy,
    log_softmax,
    naive_cross_entropy,
    naive_failure,
    naive_softmax,
    softmax,
)

pytestmark = pytest.mark.fast


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(64, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 5


def test_softmax_matches_torch(logits):
    probs = softmax(logits)
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(64, dtype=torch.float64))


def test_softmax_and_log_softmax_stay_finite_for_extreme_logits():
    extreme = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]])
    torch.testing.assert_close(softmax(extreme), torch.softmax(extreme, dim=1))
    torch.testing.assert_close(log_softmax(extreme), torch.log_softmax(extreme, dim=1))
    assert torch.isfinite(log_softmax(extreme)).all()


def loss_and_grad(loss_fn, logits, targets):
    """The batch mean of the per-example losses, and its gradient with respect to the logits."""
    leaf = logits.clone().requires_grad_(True)
    per_example = loss_fn(leaf, targets)
    assert per_example.shape == (len(logits),)
    loss = per_example.mean()
    loss.backward()
    return loss.detach(), leaf.grad


def test_cross_entropy_matches_torch_for_hard_targets(logits):
    targets = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    ours = loss_and_grad(cross_entropy, logits, targets)
    torchs = loss_and_grad(nn.CrossEntropyLoss(reduction="none"), logits, targets)
    torch.testing.assert_close(ours, torchs)


def test_cross_entropy_matches_torch_for_probability_targets(logits):
    targets = torch.softmax(torch.randn(64, 10, dtype=torch.float64), dim=1)
    torch.testing.assert_close(
        loss_and_grad(cross_entropy, logits, targets),
        loss_and_grad(nn.CrossEntropyLoss(reduction="none"), logits, targets),
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_smoothed_targets_match_torch_label_smoothing(logits, smoothing):
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    targets = smooth(labels, smoothing).double()
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(64, dtype=torch.float64))
    expected = loss_and_grad(nn.CrossEntropyLoss(label_smoothing=smoothing, reduction="none"), logits, labels)
    torch.testing.assert_close(loss_and_grad(cross_entropy, logits, targets), expected)
    torch.testing.assert_close(loss_and_grad(nn.CrossEntropyLoss(reduction="none"), logits, targets), expected)


def test_cross_entropy_has_finite_loss_and_gradient_for_logits_of_1000():
    logits = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 500.0]])
    targets = torch.tensor([1, 0])  # both confidently wrong: the loss is about 2000, not inf
    loss, grad = loss_and_grad(cross_entropy, logits, targets)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close((loss, grad), loss_and_grad(nn.CrossEntropyLoss(reduction="none"), logits, targets))
    assert loss.item() == pytest.approx(2000.0, rel=1e-3)


def test_scratch_code_calls_no_library_softmax_or_cross_entropy():
    """The hand-written functions may call each other, but no torch.*/tensor.* softmax-family method."""
    from softmax_exp import losses

    tree = ast.parse(inspect.getsource(losses))
    scratch = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name != "build_loss"]
    called = {
        node.func.attr
        for function in scratch
        for node in ast.walk(function)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert called.isdisjoint({"softmax", "log_softmax", "cross_entropy", "logsumexp", "nll_loss"}), called
    assert {"exp", "log", "max", "sum"} <= called  # the formulas, written out


@pytest.mark.parametrize("targets", [torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.2, 0.8]])])
def test_naive_loss_breaks_on_logits_of_1000_where_scratch_stays_finite_and_equals_torch(targets):
    logits = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]])
    assert not torch.isfinite(naive_softmax(logits)).all()  # exp(1000) = inf, and inf / inf = nan
    assert not torch.isfinite(naive_cross_entropy(logits, targets)).any()
    stable = cross_entropy(logits, targets)
    assert torch.isfinite(stable).all()
    torch.testing.assert_close(stable, nn.CrossEntropyLoss(reduction="none")(logits, targets))


def test_naive_loss_breaks_at_float32_exp_limit():
    """exp(88.7) is finite in float32 and exp(88.8) is inf: the line the naive softmax cannot cross."""
    assert EXP_OVERFLOW == pytest.approx(88.7228, abs=1e-4)
    targets = torch.tensor([1])
    assert torch.isfinite(naive_cross_entropy(torch.tensor([[88.7, 0.0]]), targets)).all()
    assert not torch.isfinite(naive_cross_entropy(torch.tensor([[88.8, 0.0]]), targets)).all()


def test_naive_loss_equals_scratch_on_ordinary_logits(logits):
    hard = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    soft = torch.softmax(torch.randn(64, 10, dtype=torch.float64), dim=1)
    torch.testing.assert_close(naive_softmax(logits), softmax(logits))
    for targets in (hard, soft):
        torch.testing.assert_close(
            loss_and_grad(naive_cross_entropy, logits, targets), loss_and_grad(cross_entropy, logits, targets)
        )


def test_the_naive_failure_names_its_cause():
    # Under the overflow line, the naive loss still breaks when the true class's probability underflows.
    assert naive_cross_entropy(torch.tensor([[-60.0, 60.0]]), torch.tensor([0])).item() == math.inf
    assert naive_failure(129.0).startswith("exp overflow in the unshifted softmax of loss=naive: |logit| reached 129")
    assert naive_failure(60.0).startswith("exp underflow in the unshifted softmax")
    assert "use loss=scratch or loss=torch" in naive_failure(60.0)
