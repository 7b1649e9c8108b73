"""Work for the other cores, in processes forked from this one: they start at once, with this process's
modules and state as they stand, and die with it."""

import ctypes
import multiprocessing
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
given: tuple = ()  # in a worker: what workers() was given for it, as it was when the worker was forked


def start_worker(parent: int, context: tuple) -> None:
    """A worker's first act: ask Linux to kill it when its parent dies (a forked worker holds its own copy of
    the pipe it reads tasks from, so after a `kill -9` of the sweep it would wait for a task forever); then
    keep what it was handed."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    global given
    given = context


@contextmanager
def workers(count: int, context: tuple = ()) -> Iterator[ProcessPoolExecutor]:
    """`count` forked worker processes, shut down as the block ends. Their tasks and results are pickled; the
    `context` is not (a fork copies it), and a task finds it in `forked.given`."""
    fork = multiprocessing.get_context("fork")
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(count, fork, initializer=start_worker, initargs=(os.getpid(), context))
    try:
        yield pool
    except BaseException:  # Ctrl-C: the workers stop now; Python would wait for their tasks under way as it exits
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in set(multiprocessing.active_children()) - others:
            worker.kill()
        raise
    pool.shutdown()
