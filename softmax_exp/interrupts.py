"""Ctrl-C and SIGTERM stop the CLI as a KeyboardInterrupt, but never halfway through a write to a run.

A KeyboardInterrupt raised inside an MLflow call can leave the store's session without its rollback (MLflow
rolls back on an Exception, and a KeyboardInterrupt is none), and SQLite's lock with it: ending the runs
KILLED then found the database locked, and the runs stayed RUNNING. So a signal that arrives while a run is
written to is held, and raised as soon as that write is done: a fraction of a second later.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

writing = 0  # how many writes to a run this process is in (a write may call another)
held: int | None = None  # the signal that arrived during one


def interrupt(signum: int, frame: object) -> None:
    global held
    if writing:
        held = signum
        return
    raise KeyboardInterrupt  # so `kill` ends runs as KILLED, like Ctrl-C


def install(*signums: signal.Signals) -> None:
    """These signals (Ctrl-C, SIGTERM) through `interrupt`, where this process leaves them to Python's defaults:
    a parallel launcher's worker ignores Ctrl-C, and stays so. Ray cancels a job by simulating Ctrl-C
    (_thread.interrupt_main), so a job on Ray takes Ctrl-C here, and keeps its writes whole too."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a handler, and only it runs one
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    for signum in signums:
        if signal.getsignal(signum) is defaults[signum]:
            signal.signal(signum, interrupt)


@contextmanager
def whole() -> Iterator[None]:
    """A write to a run, which a signal does not cut in two: it is raised once the write is done. Signals land in
    the main thread only: another thread's writes are left as they are."""
    global writing, held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    writing += 1
    try:
        yield
    finally:
        writing -= 1
    if not writing and held is not None:
        held = None
        raise KeyboardInterrupt
