"""A full disk under the tracking store or a run's outputs, said in one line: what is full, where, how to fix it.

Hydra writes a job's `.hydra/` files and opens its log before any of softmax_exp's code runs, and a full
disk there, or a folder that cannot be made, ends in a traceback; so RoomCallback looks at both folders and
their disks first. A disk that fills while a job runs (its model, figures, metrics) fails that job with
the same line: tracking.py asks `said` what went wrong when a write to the store fails.
"""

import errno
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from softmax_exp import store
from softmax_exp.errors import DiskFullError

log = logging.getLogger(__name__)

MIN_FREE_MB = 1.0  # less is full: a run writes about 0.2 MB to the store (model, figures, metrics)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, or a user's quota used up
SQLITE_FULL = "database or disk is full"  # SQLite's words, which survive however MLflow wraps the error


def is_full(error: BaseException | None) -> bool:
    """A write refused for want of room: the OS's ENOSPC (or quota), or SQLite's "database or disk is full",
    however MLflow and SQLAlchemy wrapped it."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in NO_ROOM:
            return True
        if SQLITE_FULL in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def free_mb(path: Path) -> float:
    """Free megabytes on the disk that holds `path`, or would hold it once made (its nearest existing folder)."""
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    return shutil.disk_usage(existing).free / 1e6


def why_not_made(folder: Path) -> str | None:
    """Why `folder` cannot be made, e.g. `in /proc (No such file or directory)`; None if it exists or can be.

    The OS is asked, by making a folder in the nearest existing one and removing it at once: permission bits
    alone miss a read-only file system, a pseudo file system such as /proc, and what root may do."""
    if folder.is_dir():
        return None
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as error:
        return f"in {existing} ({error.strerror})"
    return None


def unmakeable_folders(uri: str, outputs: Path, setting: str) -> list[str]:
    """The local store's folder and the outputs folder, each if it cannot be made: where, why, what to set."""
    unmakeable = []
    if (database := store.sqlite_path(uri)) and (why := why_not_made(database.parent)):
        unmakeable.append(
            f"the folder {database.parent} of the tracking store cannot be made {why}: "
            f"choose another (tracking.uri={store.SQLITE}/OTHER/DIR/mlflow.db)"
        )
    if why := why_not_made(outputs):
        unmakeable.append(f"the outputs folder {outputs} cannot be made {why}: choose another ({setting}=/OTHER/DIR)")
    return unmakeable


def full_disks(uri: str, outputs: Path | None, setting: str) -> list[str]:
    """What is full, and how to make room: the local store's disk and the outputs' disk, each if full."""
    full = []
    if (database := store.sqlite_path(uri)) and (free := free_mb(database.parent)) < MIN_FREE_MB:
        full.append(
            f"the disk holding the tracking store {database.parent} is full ({free:.1f} MB free): free space "
            f"there, or move the store to another disk (tracking.uri={store.SQLITE}/OTHER/DIR/mlflow.db)"
        )
    if outputs is not None and (free := free_mb(outputs)) < MIN_FREE_MB:
        full.append(
            f"the disk holding the outputs {outputs} is full ({free:.1f} MB free): free space there, "
            f"or write them to another disk ({setting}=/OTHER/DIR)"
        )
    return full


def said(
    error: BaseException, uri: str, outputs: Path | None = None, setting: str = "hydra.run.dir"
) -> DiskFullError | None:
    """A failed write as one line naming the full disk; None when the failure was not for want of room."""
    if not is_full(error):
        return None
    full = full_disks(uri, outputs, setting) or [  # a server's disk, or room made again since
        f"a disk is full ({str(error).splitlines()[0]}): free space on the disk of the tracking store "
        f"({store.redacted(uri)}) or of the outputs"
    ]
    return DiskFullError("; ".join(full))


class LogFile(logging.FileHandler):
    """A job's log file (conf/hydra/job_logging): when its disk fills, one line says so, instead of Python's
    traceback for every record it could not write, and the file keeps what it has."""

    full = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.full:
            super().emit(record)

    def close(self) -> None:
        try:
            super().close()  # the file is closed even when what is left in its buffer cannot be written
        except OSError as error:
            if not (self.full and is_full(error)):
                raise

    def handleError(self, record: logging.LogRecord) -> None:
        if not is_full(sys.exc_info()[1]):
            super().handleError(record)
            return
        self.full = True
        free = free_mb(Path(self.baseFilename).parent)
        sys.stderr.write(
            f"error: the disk holding the log {self.baseFilename} is full ({free:.1f} MB free): the log stops "
            "here, the terminal shows the rest; free space there, or write the outputs to another disk\n"
        )


class RoomCallback(Callback):
    """Before Hydra writes anything: the folders of the outputs and of a local store can be made, and their
    disks have room. A folder that cannot be made is said first: the free space of where it cannot be (0 MB
    in /proc) says nothing."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config, Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config, Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def check(config: DictConfig, outputs: Path, setting: str) -> None:
        # Hydra turns a callback's exception into a warning and goes on: say it, and stop here.
        uri, outputs = config.tracking.uri, outputs.absolute()
        if wrong := unmakeable_folders(uri, outputs, setting) or full_disks(uri, outputs, setting):
            log.error(f"error: {'; '.join(wrong)}")
            sys.exit(1)
