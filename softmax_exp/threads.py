"""How many threads torch trains on: chosen from the work, unless the config says (`threads=N`).

A step of one softmax regression (a 256 x 784 by 784 x 10 matrix product) is too small to share between
threads: on 2 cores a default run took as long on one thread as on two, and 4x as long on two once another
process kept one core busy, since torch's threads wait for each other at every operation. A lock-step group
of many models does a step as large as all of them together, and gains from more cores. So: one thread per
MODELS_PER_THREAD models of the group, at most as many as this process may use, which is the cores it may run
on, or fewer where OMP_NUM_THREADS says so (as the parallel launcher sets it for each of its workers, and Ray
for each task). An explicit `threads` wins over both. On a GPU the CPU only queues the work: one thread.
"""

import logging
import math
import os

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

MODELS_PER_THREAD = 8  # the grid's 12 models get 2 threads, its 60 get 8 (where the process may use as many)
CAP_SETTING = "OMP_NUM_THREADS"  # torch's own first setting for its thread count


def cores() -> int:
    """The threads this process may keep busy: OMP_NUM_THREADS where it is set, else the cores it may run on."""
    setting = os.environ.get(CAP_SETTING, "")
    if setting.isdigit() and int(setting) >= 1:
        return int(setting)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def chosen(models: int, device: torch.device, asked: int | None, available: int) -> int:
    """The rule: `asked` where given; else one thread per MODELS_PER_THREAD models on the CPU, up to `available`."""
    if asked is not None:
        return asked
    if device.type != "cpu":
        return 1
    return max(1, min(available, math.ceil(models / MODELS_PER_THREAD)))


def use(cfgs: list[DictConfig], device: torch.device) -> int:
    """Set torch's thread count for a lock-step group of these jobs' models, before it trains; returns it.
    Jobs of one group that ask for different counts get the largest: they train as one."""
    asked = max((cfg.threads for cfg in cfgs if cfg.threads is not None), default=None)
    threads = chosen(len(cfgs), device, asked, cores())
    torch.set_num_threads(threads)
    log.debug(f"training {len(cfgs)} model(s) on {device} with {threads} torch thread(s)")
    return threads
