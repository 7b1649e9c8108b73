"""A job's identity: its name (its choices) and its group (its configuration less the seed), from Hydra's view of it."""

from pathlib import Path

import pytest
from hydra import compose, initialize
from hydra.types import RunMode

from softmax_exp.job import Job

pytestmark = pytest.mark.fast


def group(*overrides: str) -> str:
    return Job(cfg=None, overrides=list(overrides)).group


def test_a_group_is_the_configuration_less_the_seed_and_nothing_else():
    assert (
        group("loss=scratch", "lr=0.1", "seed=3") == group("loss=scratch", "lr=0.1", "seed=4") == "loss=scratch,lr=0.1"
    )
    assert group("loss=scratch", "lr=0.05", "seed=3") == "loss=scratch,lr=0.05"
    assert group("+seed=1", "data.limit=10") == "data.limit=10"
    assert group("seed=0") == group() == "defaults"
    assert group("labels.seedless=1") == "labels.seedless=1"


def test_a_name_is_the_choices_less_where_data_and_runs_live_and_the_sweeps_name():
    job = Job(cfg=None, overrides=["experiment=grid", "loss=scratch", "tracking.uri=sqlite:///x.db", "seed=2"])
    assert job.name == "loss=scratch,seed=2" and job.group == "loss=scratch"
    assert Job(cfg=None, overrides=["data.root=/data", "tracking.experiment=mine"]).name == "defaults"


def test_a_job_of_a_sweep_knows_its_sweep_and_a_single_run_does_not(tmp_path: Path):
    with initialize(version_base="1.3", config_path="../conf"):
        # A relative hydra.sweep.dir is the launching process's (hydra.runtime.cwd), wherever the job runs.
        for mode, sweep_dir in ((RunMode.RUN, None), (RunMode.MULTIRUN, tmp_path / "sweep")):
            overrides = ["lr=0.05", "seed=1", "hydra.sweep.dir=sweep"]
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
            cfg.hydra.mode, cfg.hydra.runtime.output_dir, cfg.hydra.runtime.cwd = mode, str(tmp_path), str(tmp_path)
            job = Job.of(cfg, cfg.hydra)
            assert job.sweep_dir == sweep_dir and job.output_dir == tmp_path
            assert job.overrides == ["lr=0.05", "seed=1"] and job.name == "lr=0.05,seed=1"
