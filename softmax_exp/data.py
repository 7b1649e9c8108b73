"""Fashion-MNIST from the original IDX files into in-memory tensors, read once per process.

No per-sample transform and no DataLoader: the whole set is held as 60,000 x 784 bytes (47 MB) and
indexed by batch; a batch becomes floats in [0, 1] only when it is used (188 MB as floats would be the
largest thing in the process).
"""

import gzip
import hashlib
import logging
import os
import shutil
import zlib
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import torch

from softmax_exp.errors import DataError

log = logging.getLogger(__name__)

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
HOW_TO_GET = (
    "install Debian's copy with `sudo apt-get install -y dataset-fashion-mnist`, or put the four IDX files in data.root"
)
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
IMAGE_SIDE = 28
IMAGE_MAGIC, LABEL_MAGIC = 0x0803, 0x0801  # IDX: two zero bytes, 0x08 (unsigned byte), then ndim
SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}  # file prefix, number of examples


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # (N, 784) uint8 pixel intensities 0..255; see to_unit_interval
    labels: torch.Tensor  # (N,) int64 in 0..9

    @cached_property  # 55 MB hashed once per process, not once per job of a sweep
    def digest(self) -> str:
        """SHA-256 of the bytes read: the images, then the labels."""
        sha = hashlib.sha256(self.images.numpy().data)
        sha.update(self.labels.numpy().data)
        return sha.hexdigest()


@dataclass(frozen=True)
class FashionMNIST:
    train: Split
    test: Split
    source: Path


def to_unit_interval(images: torch.Tensor, out: torch.Tensor | None = None, scale: float = 1.0) -> torch.Tensor:
    """Pixel bytes 0..255 as float32 in [0, 1], the scale torchvision's ToTensor gives; into `out` if given.

    `scale` (data.pixel_scale) stretches that to [0, scale]: 255 feeds the raw byte values, as a model
    does when the `/ 255` is forgotten.
    """
    floats = images.float() if out is None else out.copy_(images)  # copy_ casts in place: no temporary
    return floats.div_(255 / scale)  # one division: scale=1 gives the same bits as dividing by 255


def read_idx(path: Path, magic: int, count: int) -> np.ndarray:
    """Read one IDX file (plain or .gz) and check it is exactly what Fashion-MNIST must be."""
    ndim = 3 if magic == IMAGE_MAGIC else 1
    expected = (count, IMAGE_SIDE, IMAGE_SIDE)[:ndim]
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            header = file.read(4 + 4 * ndim)  # magic, then one big-endian uint32 per dimension
            if len(header) < 4 + 4 * ndim or int.from_bytes(header[:4], "big") != magic:
                raise DataError(f"{path} is not an IDX file of the expected kind (magic {magic:#06x}); {HOW_TO_GET}")
            dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            if dims != expected:
                raise DataError(f"{path} holds shape {dims}, expected {expected}; {HOW_TO_GET}")
            body = np.empty(expected, dtype=np.uint8)  # read straight into place: no second copy
            got = file.readinto(memoryview(body).cast("B"))
            if got != body.size or file.read(1):
                raise DataError(f"{path} is truncated or has trailing bytes ({got} of {body.size}); {HOW_TO_GET}")
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"cannot read {path}: {error}; {HOW_TO_GET}") from None
    return body


def find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_split(folder: Path, prefix: str, count: int) -> Split:
    files = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{prefix}-{kind}"
        files[kind] = find_file(folder, stem)
        if files[kind] is None:
            raise DataError(f"{folder / stem}[.gz] is missing; {HOW_TO_GET}")
    images = read_idx(files["images-idx3-ubyte"], IMAGE_MAGIC, count)
    labels = read_idx(files["labels-idx1-ubyte"], LABEL_MAGIC, count)
    if labels.max() >= len(CLASSES):
        raise DataError(f"{files['labels-idx1-ubyte']} has label {labels.max()}, outside 0..9; {HOW_TO_GET}")
    return Split(torch.from_numpy(images.reshape(count, -1)), torch.from_numpy(labels.astype(np.int64)))


def read_folder(folder: Path) -> FashionMNIST:
    return FashionMNIST(
        **{split: read_split(folder, prefix, count) for split, (prefix, count) in SPLITS.items()},
        source=folder,
    )


def has_any_file(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*-idx[13]-ubyte*"))


def download(root: Path) -> Path:
    """torchvision's downloader, the last resort: needs the network, which CI and tests never have."""
    try:
        from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

        TorchvisionFashionMNIST(str(root), train=True, download=True)
        TorchvisionFashionMNIST(str(root), train=False, download=True)
    except Exception as error:  # torchvision raises bare RuntimeError/URLError/OSError when offline
        raise DataError(
            f"Fashion-MNIST is not in {root} nor {DEBIAN_ROOT}, and downloading failed ({error}); {HOW_TO_GET}"
        ) from None
    return root / "FashionMNIST" / "raw"


def keep_decompressed_copy(source: Path, root: Path) -> None:
    """Decompress the .gz files of `source` into `root`, where the next run finds them first.

    Reading the 55 MB takes ~0.02 s, inflating them ~0.3 s of every run. All four files or none: a failure
    (a read-only root, a full disk) must not leave `root` half-filled, which load() would reject.
    """
    partials = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        for packed in sorted(source.glob("*-ubyte.gz")):
            partial = root / f".{packed.stem}.{os.getpid()}.part"  # a name of its own per process
            partials.append((partial, root / packed.stem))
            with gzip.open(packed) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        for partial, final in partials:
            os.replace(partial, final)
        log.info(f"Fashion-MNIST decompressed into {root} for faster start-up")
    except OSError as error:
        for partial, _ in partials:
            partial.unlink(missing_ok=True)
        log.debug(f"no decompressed copy of Fashion-MNIST in {root}: {error}")


@lru_cache(maxsize=2)
def load(root: str) -> FashionMNIST:
    """The data set from `root` (or torchvision's layout below it), else Debian's copy, else a download.

    A folder that holds some of the files must hold them all, intact: it is never silently skipped.
    Debian's compressed copy is read once, then decompressed into `root` for the runs after.
    """
    root_path = Path(root)
    for folder in (root_path, root_path / "FashionMNIST" / "raw", DEBIAN_ROOT):
        if has_any_file(folder):
            data = read_folder(folder)
            log.info(f"Fashion-MNIST from {folder}")
            if folder == DEBIAN_ROOT != root_path:
                keep_decompressed_copy(DEBIAN_ROOT, root_path)
            return data
    return read_folder(download(root_path))
