"""Stopping a sweep's running jobs, whatever runs them, so that none goes on after its launcher.

A job is stopped by a KeyboardInterrupt (SIGTERM to a worker process, Ray's cancel), on which it ends its own
run KILLED. Python drops that interrupt where an exception cannot be raised: in a weakref callback, which the
garbage collector runs at any moment. So a job still running AGAIN_SECONDS later is interrupted again, and one
still running after GIVE_UP_SECONDS is killed, its run left for the launcher to end.
"""

import time
from collections.abc import Callable
from typing import TypeVar

AGAIN_SECONDS = 5  # a job still running this long after its interrupt never got it
GIVE_UP_SECONDS = 60  # for interrupted jobs to end their runs

Job = TypeVar("Job")


def stop_all(
    jobs: list[Job],
    interrupt: Callable[[Job], None],
    still_running: Callable[[list[Job], float], list[Job]],
    kill: Callable[[Job], None],
) -> None:
    """Interrupt every job, again while it runs on; kill those still running in the end. still_running(jobs,
    seconds) waits that long at most, and returns the jobs that have not ended."""
    running, deadline = list(jobs), time.monotonic() + GIVE_UP_SECONDS
    while running and time.monotonic() < deadline:
        for job in running:
            interrupt(job)
        running = still_running(running, AGAIN_SECONDS)
    for job in running:
        kill(job)
