"""Hydra composition of every config option, and the overrides that must be refused before any work."""

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError

from hydra_plugins.softmax_exp_sweep.grid_sweeper import grid
from softmax_exp.config import validate
from softmax_exp.errors import ConfigError
from softmax_exp.schema import PROJECT_ROOT

from .conftest import compose_config, run_cli

pytestmark = pytest.mark.fast

CONF = PROJECT_ROOT / "conf"
OPTIONS = [
    (group, path.stem) for group in ("loss", "labels", "optimizer") for path in sorted((CONF / group).glob("*.yaml"))
]
REQUIRED = {("labels", "teacher"): ["labels.teacher=runs:/0123456789abcdef/model"]}  # keys an option leaves ???


def test_defaults_are_the_textbook_setup():
    cfg = compose_config()
    assert (cfg.loss.name, cfg.labels.name, cfg.optimizer.name) == ("torch", "hard", "torch")
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.seed, cfg.device) == (0.1, 256, 10, 0, "auto")
    assert cfg.data.limit is None and cfg.threads is None  # threads chosen from the work
    assert cfg.tracking.uri == f"sqlite:///{PROJECT_ROOT}/outputs/mlflow.db"  # absolute, whatever the cwd
    assert cfg.tracking.experiment == "softmax_exp"
    validate(cfg)


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_group_option_composes_and_validates(group, option):
    cfg = compose_config(f"{group}={option}", *REQUIRED.get((group, option), []))
    assert cfg[group].name == option
    validate(cfg)


def test_soft_labels_default_to_smoothing_0_1():
    assert compose_config("labels=soft").labels.smoothing == 0.1
    assert compose_config("labels=hard").labels.smoothing is None


def test_teacher_labels_default_to_temperature_2_and_need_a_teacher():
    labels = compose_config("labels=teacher").labels
    assert (labels.temperature, labels.alpha) == (2.0, 0.5)
    with pytest.raises(ConfigError, match=r"labels.teacher is missing: give the teacher's MLflow model URI"):
        validate(compose_config("labels=teacher"))


def test_data_defaults_are_clean_labels_and_unit_pixels():
    cfg = compose_config()
    assert (cfg.data.label_noise, cfg.data.pixel_scale, cfg.data.validation) == (0.0, 1.0, 0)


EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
GRIDS = [experiment for experiment in EXPERIMENTS if experiment != "search"]  # search: hydra/sweeper=search
TEACHER = "labels.teacher=runs:/0123456789abcdef/model"  # distill needs one on the command line


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_named_experiments_run_on_the_vectorized_launcher(experiment):
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("softmax_exp_vectorized.vectorized_launcher.VectorizedLauncher")


@pytest.mark.parametrize("experiment", GRIDS)
def test_every_job_of_every_named_experiment_composes_and_validates(experiment):
    """The jobs as Hydra's sweeper expands them, each composed with its overrides and checked by the schema.
    Jobs that differ only in their seed (any int, to the schema) compose alike: each is composed once, with
    its first seed (a composition costs ~0.1 s, and the grid alone has 60 jobs)."""
    jobs = sweep_jobs(experiment)  # each experiment sweeps: a new one must say here how many jobs it makes
    assert len(jobs) == {"grid": 60, "lr_sweep": 25, "overflow": 3, "label_noise": 45, "distill": 40}[experiment]
    configurations = {}
    for job in jobs:
        configurations.setdefault(tuple(o for o in job if not o.startswith("seed=")), job)
    extra = [TEACHER] if experiment == "distill" else []
    with initialize(version_base="1.3", config_path="../conf"):
        for job in configurations.values():
            validate(compose("config", overrides=[f"experiment={experiment}", *extra, *job]))


def test_the_search_experiment_tunes_on_held_out_images_and_its_trials_compose_at_the_ends_of_its_space():
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("config", overrides=["experiment=search"], return_hydra_config=True)
        settings = cfg.hydra.sweeper
        assert settings._target_.endswith("SearchSweeper") and settings.params["data.validation"] == "10000"
        assert (settings.n_trials, settings.batch, settings.pruner) == (48, 16, "halving")
        pruning = ["pruning.trial=0", f"pruning.rungs={list(settings.rungs)}", f"pruning.keep={settings.keep}"]
        for lr, loss, labels in itertools.product(("0.001", "1.0"), ("scratch", "torch"), ("hard", "soft")):
            job = [
                "experiment=search",
                "data.validation=10000",
                f"lr={lr}",
                f"loss={loss}",
                f"labels={labels}",
                "seed=0",
            ]
            job += pruning
            validate(compose("config", overrides=job))


def test_the_overflow_experiment_feeds_raw_pixels_to_each_loss():
    assert sweep_params("overflow") == {"loss": "naive,scratch,torch", "data.pixel_scale": "255"}


def test_the_label_noise_experiment_crosses_smoothing_noise_and_seeds():
    jobs = sweep_jobs("label_noise")
    assert {tuple(job[1:3]) for job in jobs} == {
        (f"labels.smoothing={eps}", f"data.label_noise={p}") for eps in (0, 0.1, 0.3) for p in (0, 0.2, 0.4)
    }
    assert {job[3] for job in jobs} == {f"seed={seed}" for seed in range(5)}


def test_the_distill_experiment_trains_teacher_students_with_uniform_smoothing_as_the_infinite_temperature():
    cfg = compose_config("experiment=distill", TEACHER)
    assert cfg.labels.name == "teacher"
    assert sweep_params("distill") == {"labels.temperature": "1,2,4,inf", "labels.alpha": "0.1,0.5", "seed": "range(5)"}


def sweep_jobs(experiment: str) -> list[list[str]]:
    """Each job's overrides, expanded from the experiment's sweep params by the suite's grid sweeper."""
    return grid(OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in sweep_params(experiment).items()]))


def test_the_grid_and_lr_sweep_experiments_replicate_each_configuration_over_five_seeds():
    grid = {"loss": "scratch,torch", "labels": "hard,soft", "lr": "0.01,0.05,0.1", "seed": "range(5)"}
    assert sweep_params("grid") == grid
    assert sweep_params("lr_sweep") == {"lr": "0.01,0.03,0.1,0.3,1.0", "seed": "range(5)"}
    assert {job[-1] for job in sweep_jobs("lr_sweep")} == {f"seed={seed}" for seed in range(5)}


def sweep_params(experiment: str) -> dict:
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    return dict(cfg.hydra.sweeper.params)


@pytest.mark.parametrize(
    "override",
    [
        "loss=foo",
        "labels=medium",
        "optimizer=adam",
        "lr=fast",
        "batch_size=1.5",
        "epochs=ten",
        "lrr=0.1",
        "data.roots=x",
        "data.label_noise=lots",
        "labels.temprature=2",
        "threads=two",
    ],
)
def test_hydra_refuses_unknown_options_and_wrong_types(override):
    with pytest.raises(ConfigCompositionException):
        compose_config(override)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lr=0"], "lr=0.0: the learning rate must be a positive number"),
        (["lr=-0.5"], "lr=-0.5"),
        (["lr=inf"], "lr=inf"),
        (["batch_size=0"], "batch_size=0: must be at least 1"),
        (["epochs=0"], "epochs=0: must be at least 1"),
        (["labels=soft", "labels.smoothing=1.0"], r"labels.smoothing=1.0: must be in \[0, 1\)"),
        (["labels=soft", "labels.smoothing=-0.1"], "labels.smoothing=-0.1"),
        (["labels=hard", "labels.smoothing=0.2"], "smoothing applies only to labels=soft"),
        (["data.limit=0"], "data.limit=0"),
        (["data.validation=60000"], r"data.validation=60000: must be in \[0, 60000\), the training images held out"),
        (["data.validation=-1"], "data.validation=-1"),
        (["data.label_noise=1"], r"data.label_noise=1.0: must be in \[0, 1\)"),
        (["data.label_noise=-0.1"], "data.label_noise=-0.1"),
        (["data.pixel_scale=0"], "data.pixel_scale=0.0: must be a positive number"),
        (["data.pixel_scale=nan"], "data.pixel_scale=nan"),
        (["labels=teacher", TEACHER, "labels.temperature=0"], "labels.temperature=0.0: must be > 0"),
        (["labels=teacher", TEACHER, "labels.alpha=1.5"], r"labels.alpha=1.5: must be in \[0, 1\]"),
        (["labels=teacher", "labels.teacher="], "labels.teacher is missing"),
        (["labels=hard", "labels.temperature=2"], "labels.temperature=2.0: applies only to labels=teacher"),
        (["labels=soft", TEACHER], "labels.teacher=runs:/0123456789abcdef/model: applies only to labels=teacher"),
        (["device=tpu"], "device=tpu: use auto, cpu or cuda"),
        (["threads=0"], r"threads=0: must be at least 1, or null \(chosen\)"),
    ],
)
def test_values_that_make_no_sense_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+lrr=0.05", r"lrr is not a key of the config \(did you mean lr\?\)"),
        ("+data.limits=5", r"data.limits is not a key of the config \(did you mean data.limit\?\)"),
        ("+loss.temperature=2", "loss.temperature is not a key of the config"),
        ("+zzz=1", r"zzz is not a key of the config \(conf/config.yaml lists every key\)"),
    ],
)
def test_keys_added_with_a_plus_must_be_keys_of_the_schema(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(override))


def test_hydras_own_keys_may_still_be_added():
    with initialize(version_base="1.3", config_path="../conf"):
        cfg = compose("config", overrides=["+hydra.job.env_set.OMP_NUM_THREADS=1"], return_hydra_config=True)
    assert cfg.hydra.job.env_set.OMP_NUM_THREADS == "1"
    validate(cfg)  # the hydra node is Hydra's own, with whatever a launcher or sweeper puts there


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="device=cuda, but PyTorch sees no CUDA GPU"):
        validate(compose_config("device=cuda"))


# Each bad override through the real CLI, a single run's and a sweep's.
CLI_REFUSALS = [
    (["lr=-1"], "error: lr=-1.0: the learning rate must be a positive number"),
    (["data.validation=60000"], "error: data.validation=60000: must be in [0, 60000), the training images held out"),
    (["loss=foo"], "Could not find 'loss/foo'"),
    (["-m", "+lrr=0.05", "lr=0.1,0.2"], "error: lrr is not a key of the config (did you mean lr?)"),
]


def test_cli_reports_a_bad_override_in_one_line_before_any_work(tmp_path: Path):
    for i, (args, message) in enumerate(CLI_REFUSALS):
        folder = tmp_path / str(i)
        folder.mkdir()
        result = run_cli(folder, *args, f"tracking.uri=sqlite:///{folder}/m.db")
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert message in output, output
        assert "Traceback" not in output and "epoch" not in output and "Launching" not in output, output
        assert not (folder / "m.db").exists()  # refused before anything was tracked


def test_keys_are_typed_in_the_schema():
    cfg = compose_config("lr=1", "batch_size=64")
    assert isinstance(cfg.lr, float) and isinstance(cfg.batch_size, int)
    with pytest.raises(ConfigAttributeError):
        cfg.learning_rate = 0.1
