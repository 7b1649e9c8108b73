"""The config schema: types for every key in conf/, checked by Hydra when it composes a config.

The values and defaults live in conf/ (the interface); this file only says what type each key has, so a typo
or a wrong type fails at composition time. It imports no torch: a launcher's job carries Hydra's config store,
these types in it, to processes that may never train (softmax_exp/config.py checks the values).
"""

from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# conf/ writes `${project_root:}/outputs`, so outputs land in the project whatever the working directory.
OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)


@dataclass
class LossConfig:
    name: str = MISSING  # naive | scratch | torch


@dataclass
class LabelsConfig:
    name: str = MISSING  # hard | soft | teacher
    smoothing: float | None = None  # soft only: epsilon, the mass spread evenly over all K classes
    teacher: str | None = None  # teacher only: an MLflow model URI, e.g. runs:/<run_id>/model
    temperature: float | None = None  # teacher only: T > 0 divides the teacher's logits; inf: uniform
    alpha: float | None = None  # teacher only: the weight of the teacher's distribution against one_hot(y)


@dataclass
class OptimizerConfig:
    name: str = MISSING  # scratch | torch


@dataclass
class DataConfig:
    root: str = MISSING
    limit: int | None = None  # number of training examples to keep, of those not held out; None keeps them all
    validation: int = 0  # training images held out (the same for every seed and job) to choose on; 0: none
    label_noise: float = 0.0  # fraction of training labels replaced by another class, drawn per seed
    pixel_scale: float = 1.0  # pixels are fed in [0, pixel_scale]: 1 as ToTensor, 255 the raw bytes


@dataclass
class PruningConfig:
    trial: int | None = None  # set by hydra/sweeper=search: the trial this job is one seed of
    rungs: list[int] = field(default_factory=list)  # epochs after which a search's trials are ranked; []: none
    keep: float = 1.0  # the fraction of trials that go on at each rung (1/eta)


@dataclass
class TrackingConfig:
    uri: str = MISSING
    experiment: str = MISSING
    telemetry: bool = False  # MLflow's usage reports to its servers


@dataclass
class Config:
    loss: LossConfig = MISSING
    labels: LabelsConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    lr: float = MISSING
    batch_size: int = MISSING
    epochs: int = MISSING
    seed: int = MISSING
    device: str = MISSING  # auto | cpu | cuda
    threads: int | None = None  # torch's threads for training; None: chosen from the work (softmax_exp/threads.py)


# conf/config.yaml lists `schema` first in its defaults, so every group option is merged into these types.
ConfigStore.instance().store(name="schema", node=Config)
