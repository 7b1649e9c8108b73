"""A job prepared for training: its model, its training labels (label noise applied), its teacher, its targets.

Everything here can fail for one job and not its neighbours (a teacher that cannot be loaded), so it is done
job by job, before the group trains: a job whose preparation fails ends alone, and its group trains without
it. What jobs have in common is made once and shared: the noisy labels of a (label_noise, seed), a teacher,
the targets of the same labels built the same way. The trainer tells shared targets by identity and keeps
one copy of them.
"""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from softmax_exp import validation
from softmax_exp.data import FashionMNIST, Split
from softmax_exp.labels import build_targets
from softmax_exp.model import build_model
from softmax_exp.noise import add_label_noise
from softmax_exp.teacher import Teacher, load_teacher
from softmax_exp.train import Learner, Lockstep

# What every model of one lock-step group must share: they step through the same data, epoch by epoch.
LOCKSTEP_KEYS = (
    "batch_size",
    "epochs",
    "data.root",
    "data.validation",
    "data.limit",
    "data.pixel_scale",
    "pruning.rungs",
    "pruning.keep",
)


def lockstep_key(cfg: DictConfig, device: torch.device) -> tuple:
    return (*(OmegaConf.select(cfg, key) for key in LOCKSTEP_KEYS), str(device))


def training_set(cfg: DictConfig, data: FashionMNIST) -> tuple[Split, Split | None]:
    """The training images and labels a job trains on (data.validation held out, then the first data.limit of
    those left), and the held-out ones: None without a validation set."""
    train, held_out = validation.split(data.train, cfg.data.validation)
    return Split(train.images[: cfg.data.limit], train.labels[: cfg.data.limit]), held_out


def lockstep(cfg: DictConfig, data: FashionMNIST, device: torch.device) -> Lockstep:
    """What the group whose lockstep_key `cfg` has shares: the training images it keeps, the validation and test
    sets, the steps."""
    train, held_out = training_set(cfg, data)
    return Lockstep(
        images=train.images.to(device),
        labels=train.labels.to(device),
        test_images=data.test.images.to(device),
        test_labels=data.test.labels.to(device),
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        pixel_scale=cfg.data.pixel_scale,
        validation_images=None if held_out is None else held_out.images.to(device),
        validation_labels=None if held_out is None else held_out.labels.to(device),
    )


@dataclass
class PreparedJob:
    learner: Learner  # what the trainer is handed
    labels_changed: int  # training labels that data.label_noise replaced
    teacher: Teacher | None  # labels=teacher: where the soft labels came from


class Preparation:
    """Prepares the jobs of one lock-step group, each on its own; what two jobs share is made once."""

    def __init__(self, group: Lockstep, test: Split) -> None:
        # Label noise and targets are made for the group's training images alone; the test set measures a teacher.
        self.group, self.test, self.device = group, test, group.images.device
        self.noisy: dict[tuple, tuple[torch.Tensor, int]] = {}  # (label_noise, seed) -> labels, how many changed
        self.teachers: dict[tuple, Teacher] = {}  # (model uri, tracking uri) -> the loaded teacher
        self.targets: dict[tuple, torch.Tensor] = {}  # (labels config, id of the labels) -> targets

    def __call__(self, cfg: DictConfig) -> PreparedJob:
        """The job's learner, or the job's own error (a TeacherError) for it alone."""
        noise = (cfg.data.label_noise, cfg.seed)
        if noise not in self.noisy:
            self.noisy[noise] = add_label_noise(self.group.labels, *noise)
        labels, changed = self.noisy[noise]
        teacher = self.teacher(cfg) if cfg.labels.name == "teacher" else None
        kind = (OmegaConf.to_yaml(cfg.labels), id(labels))
        if kind not in self.targets:
            self.targets[kind] = build_targets(cfg.labels, labels, self.group.images, teacher)
        learner = Learner(
            model=build_model(cfg.seed).to(self.device),
            seed=cfg.seed,
            lr=cfg.lr,
            loss=cfg.loss.name,
            optimizer=cfg.optimizer.name,
            labels=labels,
            targets=self.targets[kind],
        )
        return PreparedJob(learner, changed, teacher)

    def teacher(self, cfg: DictConfig) -> Teacher:
        """Loaded, checked and measured once per model and store; a failure is not kept, so each job says it."""
        key = (cfg.labels.teacher, cfg.tracking.uri)
        if key not in self.teachers:
            self.teachers[key] = load_teacher(*key, self.test, self.device)
        return self.teachers[key]


def prepare_group(
    cfgs: list[DictConfig], data: FashionMNIST, device: torch.device
) -> tuple[Lockstep, list[PreparedJob]]:
    """Configs that share a lockstep_key prepared as one group, for train() without tracking (a notebook, the
    tests, benchmarks/); a job that cannot be prepared raises its error."""
    group = lockstep(cfgs[0], data, device)
    prepare = Preparation(group, data.test)
    return group, [prepare(cfg) for cfg in cfgs]
