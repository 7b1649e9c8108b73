"""Forked workers (figures, job configs) never outlive what they work for: not a `kill -9` of their sweep, and
not its Ctrl-C, which must not wait for their tasks under way."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from softmax_exp.schema import PROJECT_ROOT


def alive(pid: int) -> bool:
    """Running or sleeping: not gone, and not a zombie waiting for whoever adopted it to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start(script: str) -> tuple[subprocess.Popen, list[int]]:
    """A Python process that starts forked workers and prints their process ids; and those ids."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    sweep = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    workers = [int(pid) for pid in sweep.stdout.readline().split()]
    assert workers and all(alive(pid) for pid in workers)
    return sweep, workers


def gone_within(seconds: float, pids: list[int]) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(alive(pid) for pid in pids)


def test_figure_workers_die_with_a_killed_sweep():
    """`kill -9` of a sweep while its workers draw: they must not wait forever for their next figure."""
    sweep, workers = start(
        "import multiprocessing, time\n"
        "from softmax_exp import plots\n"
        "with plots.drawing(workers=2) as draw:\n"
        "    list(draw(time.sleep, [0, 0]))\n"
        "    print(*[child.pid for child in multiprocessing.active_children()], flush=True)\n"
        "    time.sleep(600)\n"
    )
    assert len(workers) == 2
    sweep.kill()
    sweep.wait()
    assert gone_within(10, workers)


def test_an_interrupt_stops_the_workers_at_once_not_after_their_task():
    """Python waits for a pool's tasks under way as it exits: a Ctrl-C while a worker composes its part of a
    batch would have to wait for the whole part."""
    sweep, workers = start(
        "import multiprocessing, sys, time\n"
        "from softmax_exp import forked\n"
        "with forked.workers(1) as pool:\n"
        "    task = pool.submit(time.sleep, 600)\n"
        "    while not task.running():\n"
        "        time.sleep(0.01)\n"
        "    print(*[child.pid for child in multiprocessing.active_children()], flush=True)\n"
        "    sys.stdin.readline()\n"
        "    raise KeyboardInterrupt\n"
    )
    sweep.communicate("go\n", timeout=30)  # Python ends on a KeyboardInterrupt by its own SIGINT
    assert sweep.returncode == -signal.SIGINT
    assert gone_within(5, workers)
