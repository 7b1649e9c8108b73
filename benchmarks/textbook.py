"""The textbook pipeline (d2l.ai, "Softmax Regression Implementation from Scratch"): the baseline of the benchmark.

Written as the recipe writes it, on purpose without any of the suite's optimizations: torchvision's
FashionMNIST with ToTensor, a DataLoader (batch 256, shuffled, 4 worker processes) that turns every image
into a tensor one by one, softmax and cross-entropy by hand, hand-written minibatch SGD with lr 0.1, and
Python accumulators for the metrics.

    python benchmarks/textbook.py [--epochs 10] [--root DIR]

Prints one line per epoch and, last, one JSON line (per-epoch seconds, final metrics) for bench.py.
"""

import argparse
import gzip
import json
import shutil
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_ROOT = Path(__file__).resolve().parent / "results" / "textbook_data"  # git-ignored
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
BATCH_SIZE, NUM_WORKERS, LR = 256, 4, 0.1
NUM_INPUTS, NUM_OUTPUTS = 784, 10


def prepare_data(root: Path) -> None:
    """torchvision wants ROOT/FashionMNIST/raw/ with the unzipped IDX files; unzip Debian's copy there once.

    Not part of the recipe (which downloads) and never timed: the benchmark has no network.
    """
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (raw / name).is_file():
            continue
        partial = raw / (name + ".partial")  # renamed only when complete, so an interrupted unzip is redone
        with gzip.open(DEBIAN_ROOT / (name + ".gz"), "rb") as source, partial.open("wb") as target:
            shutil.copyfileobj(source, target)
        partial.rename(raw / name)


def load_data_fashion_mnist(root: Path) -> tuple[DataLoader, DataLoader]:
    trans = transforms.ToTensor()
    mnist_train = datasets.FashionMNIST(root=str(root), train=True, transform=trans, download=False)
    mnist_test = datasets.FashionMNIST(root=str(root), train=False, transform=trans, download=False)
    return (
        DataLoader(mnist_train, BATCH_SIZE, shuffle=True, num_workers=NUM_WORKERS),
        DataLoader(mnist_test, BATCH_SIZE, shuffle=False, num_workers=NUM_WORKERS),
    )


torch.manual_seed(0)  # the textbook does not seed; seeded here so that reruns give the same numbers
W = torch.normal(0, 0.01, size=(NUM_INPUTS, NUM_OUTPUTS), requires_grad=True)
b = torch.zeros(NUM_OUTPUTS, requires_grad=True)


def softmax(X):
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition  # broadcasting: each row divided by its sum


def net(X):
    return softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)


def cross_entropy(y_hat, y):
    return -torch.log(y_hat[range(len(y_hat)), y])


def sgd(params, lr, batch_size):
    """Minibatch SGD on the summed loss, so the step divides by the batch size."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


class Accumulator:
    """Sums over n variables."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args, strict=True)]

    def __getitem__(self, idx):
        return self.data[idx]


def accuracy(y_hat, y):
    """Number of correct predictions."""
    y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy(data_iter):
    metric = Accumulator(2)  # correct predictions, predictions
    with torch.no_grad():
        for X, y in data_iter:
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def train_epoch(train_iter):
    metric = Accumulator(3)  # sum of loss, correct predictions, examples
    for X, y in train_iter:
        y_hat = net(X)
        loss = cross_entropy(y_hat, y)
        loss.sum().backward()
        sgd([W, b], LR, X.shape[0])
        metric.add(float(loss.sum()), accuracy(y_hat, y), y.numel())
    return metric[0] / metric[2], metric[1] / metric[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="holds FashionMNIST/raw/ (made if missing)")
    args = parser.parse_args()

    prepare_data(args.root)
    train_iter, test_iter = load_data_fashion_mnist(args.root)
    epoch_seconds = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        train_loss, train_acc = train_epoch(train_iter)
        test_acc = evaluate_accuracy(test_iter)
        epoch_seconds.append(time.perf_counter() - start)
        print(
            f"epoch {epoch:>3}  train_loss={train_loss:.4f}  train_acc={train_acc:.4f}  "
            f"test_acc={test_acc:.4f}  seconds={epoch_seconds[-1]:.3f}",
            flush=True,
        )
    print(json.dumps({"epoch_seconds": epoch_seconds, "train_loss": train_loss, "test_acc": test_acc}))


if __name__ == "__main__":
    main()
