"""The IDX reader, on small files written here (good, corrupt, truncated), and on the real data set."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from softmax_exp import data
from softmax_exp.errors import DataError


def write_idx(path: Path, magic: int, array: np.ndarray) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def small_split(folder: Path, prefix: str = "train", count: int = 5, suffix: str = ".gz", labels=None) -> None:
    images = np.arange(count * 28 * 28).reshape(count, 28, 28) % 256
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", data.IMAGE_MAGIC, images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", data.LABEL_MAGIC, np.array(labels or range(count)))


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_reads_a_small_split_plain_or_gzipped(tmp_path, suffix):
    small_split(tmp_path, suffix=suffix)
    split = data.read_split(tmp_path, "train", 5)
    assert split.images.shape == (5, 784) and split.images.dtype.is_floating_point is False
    assert split.labels.tolist() == [0, 1, 2, 3, 4]
    pixels = data.to_unit_interval(split.images)
    assert pixels.min().item() == 0.0 and pixels.max().item() == 1.0
    assert pixels[0, 1].item() == pytest.approx(1 / 255)


def test_pixel_scale_255_feeds_the_raw_bytes_and_1_the_unit_interval(fashion_mnist):
    images = fashion_mnist.test.images[:100]
    assert torch.equal(data.to_unit_interval(images, scale=255), images.float())
    assert torch.equal(data.to_unit_interval(images), images.float() / 255)  # the default: ToTensor's values
    out = torch.empty(100, 784)
    assert data.to_unit_interval(images, out=out, scale=2.0) is out
    assert torch.allclose(out, images.float() * (2 / 255))


def test_wrong_magic_number_names_the_file(tmp_path):
    small_split(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    write_idx(path, data.IMAGE_MAGIC, np.zeros((5, 28, 28)))  # an image file where labels belong
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not an IDX file"):
        data.read_split(tmp_path, "train", 5)


def test_truncated_file_is_rejected(tmp_path):
    small_split(tmp_path, suffix="")
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated"):
        data.read_split(tmp_path, "train", 5)


def test_corrupt_gzip_is_rejected(tmp_path):
    small_split(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])  # cut inside the compressed stream
    with pytest.raises(DataError, match="cannot read .*train-images-idx3-ubyte.gz"):
        data.read_split(tmp_path, "train", 5)


def test_wrong_count_and_label_range_are_rejected(tmp_path):
    small_split(tmp_path)
    with pytest.raises(DataError, match=r"holds shape \(5, 28, 28\), expected \(60000, 28, 28\)"):
        data.read_split(tmp_path, "train", 60_000)
    small_split(tmp_path, labels=[0, 1, 2, 3, 10])
    with pytest.raises(DataError, match="label 10, outside 0..9"):
        data.read_split(tmp_path, "train", 5)


def test_a_folder_with_only_some_files_is_an_error_not_skipped(tmp_path):
    small_split(tmp_path, count=5)
    with pytest.raises(DataError, match="is missing|holds shape"):
        data.load.__wrapped__(str(tmp_path))


def test_loads_the_real_data_set(fashion_mnist):
    assert fashion_mnist.train.images.shape == (60_000, 784)
    assert fashion_mnist.test.images.shape == (10_000, 784)
    assert fashion_mnist.train.labels.bincount().tolist() == [6000] * 10
    assert fashion_mnist.test.labels.bincount().tolist() == [1000] * 10


def test_an_empty_root_falls_back_to_debians_copy_and_keeps_it_decompressed(tmp_path, fashion_mnist):
    root = tmp_path / "nothing-here"
    loaded = data.load.__wrapped__(str(root))
    assert loaded.source == data.DEBIAN_ROOT
    assert (loaded.train.labels == fashion_mnist.train.labels).all()
    assert sorted(path.name for path in root.iterdir()) == sorted(p.stem for p in data.DEBIAN_ROOT.glob("*.gz"))

    again = data.load.__wrapped__(str(root))  # the next run reads the plain copy, to the same tensors
    assert again.source == root
    for split in ("train", "test"):
        assert (getattr(again, split).images == getattr(loaded, split).images).all()
        assert (getattr(again, split).labels == getattr(loaded, split).labels).all()


def test_a_root_that_cannot_be_written_still_loads_and_is_left_empty(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    loaded = data.load.__wrapped__(str(blocker / "data"))  # mkdir fails: data.root cannot exist here
    assert loaded.source == data.DEBIAN_ROOT
    assert blocker.read_text() == "not a folder" and sorted(tmp_path.iterdir()) == [blocker]
