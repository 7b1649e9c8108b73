"""Hydra's own conformance suites for launcher plugins (hydra.test_utils.launcher_common_tests), run on ours
as Hydra's plugins run them on theirs: tiny apps of Hydra's, each job a few milliseconds of work."""

import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite, sweep_1_job

from softmax_exp.schema import PROJECT_ROOT

# slurm_local is a config of this project's (conf/hydra/launcher/), not one the plugin registers: Hydra's apps
# find it as any other app would, with the project's configs added to their search path.
OUR_CONFIGS = f"hydra.searchpath=[file://{PROJECT_ROOT / 'conf'}]"


pytestmark = pytest.mark.usefixtures("hydra_suite_app")


def discovered(module: str, *classes: str) -> bool:
    """Whether Hydra's plugin scan finds these launchers of ours, as it finds its own plugins'."""
    found = {f"{plugin.__module__}.{plugin.__name__}" for plugin in Plugins.instance().discover(Launcher)}
    return {f"hydra_plugins.{module}.{name}" for name in classes} <= found


def test_hydras_plugin_scan_finds_the_parallel_launcher():
    assert discovered("softmax_exp_parallel.parallel_launcher", "ParallelLauncher")


@pytest.mark.parametrize("launcher_name, overrides", [("parallel", [])])
class TestParallelLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled", "hydra/launcher=parallel"])],
)
class TestParallelLauncherIntegration(IntegrationTestSuite):
    pass


VECTORIZED_REFUSES = (
    "hydra/launcher=vectorized runs softmax_exp's own jobs only (softmax_exp.main), not {}: "
    "use hydra/launcher=basic, or parallel, for another app"
)


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_the_vectorized_launcher_refuses_the_suites_app_before_any_job_runs(hydra_sweep_runner, tmp_path):
    """It takes over softmax_exp.main's work and never calls the task it is handed: Hydra's suites cannot pass."""
    refusal = re.escape(VECTORIZED_REFUSES).replace(re.escape("{}"), r"\S+")  # what the test harness hands over
    with pytest.raises(HydraException, match=f"^{refusal}$"):
        sweep_1_job(
            hydra_sweep_runner, ["hydra/launcher=vectorized"], LauncherTestSuite().get_task_function(), tmp_path
        )
    assert list(tmp_path.iterdir()) == []  # no sweep folder, no job's
    # On the command line, one line (and Hydra's own hint), no traceback: Hydra's example app.
    command = [sys.executable, "-m", "hydra.test_utils.example_app", "-m", "hydra/launcher=vectorized"]
    result = subprocess.run([*command, "db=mysql,postgresql"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == VECTORIZED_REFUSES.format("__main__.run_cli"), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == "" and list(tmp_path.iterdir()) == []


@pytest.mark.cluster
def test_hydras_plugin_scan_finds_the_submitit_launchers():
    assert discovered("softmax_exp_submitit._submitit_launchers", "LocalLauncher", "SlurmLauncher")


@pytest.mark.cluster
def test_the_suites_hydra_apps_get_our_slurm_local_launcher(hydra_restore_singletons):
    with initialize_config_module(version_base=None, config_module="hydra.test_utils.configs"):
        config = compose("compose", [OUR_CONFIGS, "hydra/launcher=slurm_local"], return_hydra_config=True)
    assert config.hydra.launcher._target_ == "hydra_plugins.softmax_exp_submitit._submitit_launchers.LocalLauncher"


@pytest.mark.cluster
@pytest.mark.parametrize("launcher_name, overrides", [("slurm_local", [OUR_CONFIGS, "hydra.launcher.timeout_min=2"])])
class TestSlurmLocalLauncher(LauncherTestSuite):
    pass


@pytest.mark.cluster
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {},
            [
                "-m",
                OUR_CONFIGS,
                "hydra/hydra_logging=disabled",
                "hydra/job_logging=disabled",
                "hydra/launcher=slurm_local",
                "hydra.launcher.gpus_per_node=0",
                "hydra.launcher.timeout_min=1",
            ],
        )
    ],
)
class TestSlurmLocalLauncherIntegration(IntegrationTestSuite):
    pass
