"""Checks of a composed config that its types alone cannot make (softmax_exp/schema.py types every key).

Run before any work: a bad value, or a key no conf/ file defines, stops a job with one line that says how to
fix it.
"""

import difflib
import math
from dataclasses import fields, is_dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from softmax_exp.data import SPLITS
from softmax_exp.errors import ConfigError
from softmax_exp.losses import LOSSES
from softmax_exp.optimizers import OPTIMIZERS
from softmax_exp.schema import Config

LABELS = ("hard", "soft", "teacher")
TRAIN_IMAGES = SPLITS["train"][1]  # 60,000


def validate(cfg: DictConfig) -> None:
    """Check the values that types alone cannot, so a bad run stops before any data is read."""
    if unknown := unknown_keys(cfg):
        raise ConfigError(unknown_key_message(unknown[0]))
    checks = [
        (cfg.loss.name in LOSSES, f"loss.name={cfg.loss.name}: use {options('loss', LOSSES)}"),
        (
            cfg.optimizer.name in OPTIMIZERS,
            f"optimizer.name={cfg.optimizer.name}: use {options('optimizer', OPTIMIZERS)}",
        ),
        (cfg.labels.name in LABELS, f"labels.name={cfg.labels.name}: use labels=hard, soft or teacher"),
        (math.isfinite(cfg.lr) and cfg.lr > 0, f"lr={cfg.lr}: the learning rate must be a positive number"),
        (cfg.batch_size >= 1, f"batch_size={cfg.batch_size}: must be at least 1"),
        (cfg.epochs >= 1, f"epochs={cfg.epochs}: must be at least 1"),
        (cfg.data.limit is None or cfg.data.limit >= 1, f"data.limit={cfg.data.limit}: must be at least 1, or null"),
        (
            0 <= cfg.data.validation < TRAIN_IMAGES,
            f"data.validation={cfg.data.validation}: must be in [0, {TRAIN_IMAGES}), the training images held out",
        ),
        (0 <= cfg.data.label_noise < 1, f"data.label_noise={cfg.data.label_noise}: must be in [0, 1)"),
        (
            math.isfinite(cfg.data.pixel_scale) and cfg.data.pixel_scale > 0,
            f"data.pixel_scale={cfg.data.pixel_scale}: must be a positive number (1: pixels in [0, 1]; 255: raw)",
        ),
        (cfg.device in ("auto", "cpu", "cuda"), f"device={cfg.device}: use auto, cpu or cuda"),
        (0 < cfg.pruning.keep <= 1, f"pruning.keep={cfg.pruning.keep}: the fraction of trials kept, in (0, 1]"),
        (
            all(1 <= rung < cfg.epochs for rung in cfg.pruning.rungs),
            f"pruning.rungs={list(cfg.pruning.rungs)}: each rung is an epoch after which trials are ranked, "
            f"from 1 to epochs - 1 = {cfg.epochs - 1}",
        ),
        (cfg.threads is None or cfg.threads >= 1, f"threads={cfg.threads}: must be at least 1, or null (chosen)"),
    ]
    smoothing = cfg.labels.smoothing
    if cfg.labels.name == "soft":
        checks.append(
            (smoothing is not None and 0 <= smoothing < 1, f"labels.smoothing={smoothing}: must be in [0, 1)")
        )
    else:
        checks.append((smoothing is None, f"labels.smoothing={smoothing}: smoothing applies only to labels=soft"))
    checks += teacher_checks(cfg.labels)
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda, but PyTorch sees no CUDA GPU here: use device=cpu or device=auto")


def options(group: str, names) -> str:
    """`loss=naive, loss=scratch or loss=torch`: the options of a config group, as overrides."""
    *others, last = [f"{group}={name}" for name in names]
    return f"{', '.join(others)} or {last}" if others else last


def teacher_checks(labels: DictConfig) -> list[tuple[bool, str]]:
    """labels.teacher, .temperature and .alpha: all set and sensible with labels=teacher, else none set."""
    keys = ("teacher", "temperature", "alpha")
    if labels.name != "teacher":
        return [(labels[key] is None, f"labels.{key}={labels[key]}: applies only to labels=teacher") for key in keys]
    if OmegaConf.is_missing(labels, "teacher") or not labels.teacher:
        return [
            (False, "labels.teacher is missing: give the teacher's MLflow model URI, labels.teacher=runs:/<id>/model")
        ]
    temperature, alpha = labels.temperature, labels.alpha
    return [
        (
            temperature is not None and temperature > 0,
            f"labels.temperature={temperature}: must be > 0 (inf makes the teacher's distribution uniform)",
        ),
        (alpha is not None and 0 <= alpha <= 1, f"labels.alpha={alpha}: must be in [0, 1]"),
    ]


def unknown_keys(cfg: DictConfig, schema: type = Config, prefix: str = "") -> list[str]:
    """Keys the schema does not type: Hydra adds any `+key=value` to the config, a typo included."""
    known = {f.name: f.type for f in fields(schema)}
    unknown = []
    for key in cfg:
        if not prefix and key == "hydra":  # Hydra's own node, with what its launchers and sweepers add
            continue
        if key not in known:
            unknown.append(f"{prefix}{key}")
        elif is_dataclass(known[key]) and isinstance(cfg[key], DictConfig):
            unknown += unknown_keys(cfg[key], known[key], f"{prefix}{key}.")
    return unknown


def schema_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every key the schema types, e.g. `lr`, `data.limit`."""
    keys = []
    for f in fields(schema):
        keys += schema_keys(f.type, f"{prefix}{f.name}.") if is_dataclass(f.type) else [f"{prefix}{f.name}"]
    return keys


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, schema_keys(), n=1)
    hint = f"did you mean {close[0]}?" if close else "conf/config.yaml lists every key"
    return f"{key} is not a key of the config ({hint}): a `+key=value` override may only set keys conf/ defines"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
