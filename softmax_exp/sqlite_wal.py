"""The local store's SQLite in write-ahead-log mode, with a checkpoint when the process ends.

Every MLflow call that writes is a commit. In SQLite's default mode (a rollback journal, full sync) each
commit waits for several disk flushes: 26 ms here, about 30 per job, so tracking cost more than training.
In WAL mode with synchronous=NORMAL a commit appends to `mlflow.db-wal` and flushes only at checkpoints:
0.1 ms. The store stays consistent if the process or the machine dies; a power cut can lose the last
commits before it, not corrupt the rest. Readers (the MLflow UI, a parallel job) no longer block writers.
The mode is a property of the database file, so every later reader sees it; it needs a local disk
(SQLite's WAL does not work across machines on a network file system: use an `mlflow server` there).
"""

import atexit
import sqlite3
from contextlib import closing

from sqlalchemy import event
from sqlalchemy.engine import Engine

BUSY_MS = 20_000  # as MLflow's own: wait this long for another process's write to finish
written: set[str] = set()  # database files this process opened


@event.listens_for(Engine, "connect")
def write_ahead(connection, record) -> None:
    """On every new SQLite connection of any engine, MLflow's included."""
    if not isinstance(connection, sqlite3.Connection):
        return
    with closing(connection.cursor()) as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_MS}")  # the switch to WAL waits for other writers
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        written.update(path for _, name, path in cursor.execute("PRAGMA database_list") if name == "main" and path)


@atexit.register
def checkpoint() -> None:
    """Copy the log into the database file itself, so that a copy of `mlflow.db` alone holds every run.

    The last connection to close would do it, but the process ends without closing MLflow's (__main__.py).
    """
    for path in written:
        try:
            with closing(sqlite3.connect(path, timeout=BUSY_MS / 1000)) as connection:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # the store is gone or busy: its log stays beside it, and SQLite reads both
            pass
