"""Hydra's own conformance suites for launcher plugins (hydra.test_utils.launcher_common_tests), run on ours
as Hydra's plugins run them on theirs: tiny apps of Hydra's, each job a few milliseconds of work."""

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite


@pytest.mark.parametrize("launcher_name, overrides", [("parallel", [])])
class TestParallelLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({}, ["-m", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled", "hydra/launcher=parallel"])],
)
class TestParallelLauncherIntegration(IntegrationTestSuite):
    pass
