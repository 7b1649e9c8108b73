"""The data each run trained and was tested on, as MLflow dataset inputs: the runs table's Dataset column.

The digest is that of the bytes actually read (data.Split.digest, a SHA-256 of the images and labels),
combined with what makes this run's training set differ from the files: `data.validation` (the images held
out), `data.limit` and `data.label_noise` (whose noise is drawn from `seed`). The source is the folder the
files were read from.
"""

import hashlib
import warnings

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from omegaconf import DictConfig

from softmax_exp.data import FashionMNIST

NAME = "fashion-mnist"
DIGEST_CHARS = 16  # of the SHA-256's hex digits: enough to tell versions apart in the table


def train_variant(cfg: DictConfig) -> str:
    """What this run changes about the training set: '' for all 60,000 images with their own labels."""
    held_out, limit, noise = cfg.data.validation, cfg.data.limit, cfg.data.label_noise
    parts = [f"less the {held_out} held out"] if held_out else []
    if limit is not None:
        parts.append(f"first {limit}")
    if noise:
        parts.append(f"label_noise={noise:g} seed={cfg.seed}")
    return ", ".join(parts)


def dataset_inputs(data: FashionMNIST, cfg: DictConfig) -> list[DatasetInput]:
    """The training set as this run used it (context `train`), the images held out of it (context `validation`,
    with data.validation) and the test set (context `test`)."""
    with warnings.catch_warnings():  # MLflow registers its local source twice (schemes '' and file), and says so
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(data.source))
    used = [("train", "train", train_variant(cfg)), ("test", "test", "")]  # context, file, what the run changed
    if cfg.data.validation:
        used.insert(1, ("validation", "train", f"the {cfg.data.validation} held out"))
    inputs = []
    for context, split, variant in used:
        digest = getattr(data, split).digest
        if variant:
            digest = hashlib.sha256(f"{digest} {variant}".encode()).hexdigest()
        name = f"{NAME} {split}" + (f" ({variant})" if variant else "")
        dataset = MetaDataset(source, name=name, digest=digest[:DIGEST_CHARS])
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)]))
    return inputs
