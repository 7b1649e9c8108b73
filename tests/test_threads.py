"""The thread count torch trains on: chosen from the work, capped by what the process may use, or as configured."""

import os

import pytest
import torch

from softmax_exp import threads
from softmax_exp.job import Job
from softmax_exp.jobs import run_jobs

from .conftest import compose_config

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.fast
@pytest.mark.parametrize(
    ("models", "available", "expected"),
    [(1, 2, 1), (8, 2, 1), (9, 2, 2), (12, 2, 2), (60, 2, 2), (12, 16, 2), (60, 16, 8), (60, 1, 1), (1, 16, 1)],
)
def test_one_thread_per_eight_models_of_the_group_at_most_the_cores(models, available, expected):
    assert threads.chosen(models, CPU, None, available) == expected


@pytest.mark.fast
def test_a_gpu_group_takes_one_thread_and_an_explicit_count_wins_over_everything():
    assert threads.chosen(60, CUDA, None, 16) == 1
    assert threads.chosen(1, CPU, 4, 2) == 4  # more than the cap: asked for
    assert threads.chosen(60, CUDA, 3, 16) == 3


@pytest.mark.fast
def test_omp_num_threads_caps_the_choice_as_the_parallel_launcher_sets_it_per_worker(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.cores() == 1 and threads.chosen(60, CPU, None, threads.cores()) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.cores() == 3
    for unusable in ("", "0", "two"):  # as torch, which ignores what it cannot read: the cores it may run on
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert threads.cores() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.cores() == len(os.sched_getaffinity(0))


@pytest.fixture
def restored_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.fast
def test_a_group_asking_for_different_counts_gets_the_largest(restored_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    cfgs = [compose_config("threads=1"), compose_config(), compose_config("threads=3")]
    assert threads.use(cfgs, CPU) == 3 == torch.get_num_threads()
    assert threads.use(cfgs[1:2], CPU) == 1 == torch.get_num_threads()


@pytest.mark.parametrize(("override", "expected"), [((), 1), (("threads=2",), 2)])
def test_a_job_trains_on_the_count_chosen_or_configured(store, restored_threads, override, expected):
    """Through the job function, as every launcher runs jobs: the count is set before the group trains. Not in
    the fast lane, which has the rule: a process's first job pays for importing what tracking a run needs."""
    torch.set_num_threads(3)  # whatever came before
    cfg = compose_config("epochs=1", "data.limit=1000", f"tracking.uri={store}", *override)
    (result,) = run_jobs([Job(cfg)])
    assert result["status"] == "FINISHED" and torch.get_num_threads() == expected
