"""`hydra/launcher=ray_cluster` against Hydra's shared launcher suites, and Ray's token authentication.

The suites run on the session's Ray cluster (tests/conftest.py), started as docs/clusters-ray.md says: with
token authentication, its token given in RAY_AUTH_TOKEN_PATH. The launcher is taken as users take it, from
conf/hydra/launcher/ray_cluster.yaml, put on the search path of the suites' own apps.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from softmax_exp.schema import PROJECT_ROOT

from .conftest import RAY, RAY_AUTH_VARIABLES, copy_of, free_port, ray_head, run_cli
from .test_cluster import QUICK, sweep_runs

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("hydra_suite_app")]

CONF = f"hydra.searchpath=[file://{PROJECT_ROOT}/conf]"


@pytest.mark.parametrize("launcher_name", ["ray_cluster"])
class TestRayClusterLauncher(LauncherTestSuite):
    """The sweeps run in this process, which joins the cluster once, as a notebook would."""

    @pytest.fixture(scope="class")
    @classmethod
    def joined_here(cls):
        """Ray reads RAY_AUTH_MODE once, as it is imported: set for this process while these tests run, as the
        launcher would; elsewhere the launcher sets it itself, in processes of its own."""
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAY_AUTH_MODE", "token")
            yield
            import ray

            ray.shutdown()

    @pytest.fixture
    def overrides(self, ray_cluster: str, joined_here) -> list[str]:
        return [CONF, f"hydra.launcher.ray.init.address={ray_cluster}"]


class TestRayClusterLauncherIntegration(IntegrationTestSuite):
    """Each sweep a process of its own (`python task.py -m ...`), with RAY_AUTH_MODE unset: the launcher's default."""

    @pytest.fixture
    def task_launcher_cfg(self) -> dict:
        return {}

    @pytest.fixture
    def extra_flags(self, ray_cluster: str) -> list[str]:
        return ["-m", "hydra/launcher=ray_cluster", CONF, f"hydra.launcher.ray.init.address={ray_cluster}"]


def home_without_ray_auth(monkeypatch, home: Path) -> None:
    """`home` for HOME, and nothing of Ray's token authentication set, here and in what the test starts."""
    monkeypatch.setenv("HOME", str(home))
    for name in RAY_AUTH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_a_cluster_a_local_ray_init_turned_token_auth_on_for_is_joined_and_a_refusal_said_in_one_line(
    tmp_path, empty_store, monkeypatch
):
    # What `hydra/launcher=ray` does on a machine: a local ray.init(), which writes ~/.ray/auth_token. From then
    # on `ray start --head` turns token authentication on, while a process joining it by address keeps it off.
    home_without_ray_auth(monkeypatch, tmp_path / "home")
    with tempfile.TemporaryDirectory(prefix="ray-") as folder:  # short: Ray's socket paths stay under 108 characters
        # Without its dashboard, which has no part in the token: 2 s and five processes less.
        local_ray = f"import ray; ray.init(num_cpus=1, include_dashboard=False, _temp_dir={folder!r}); ray.shutdown()"
        subprocess.run([sys.executable, "-c", local_ray], capture_output=True, timeout=300)
    assert (tmp_path / "home" / ".ray" / "auth_token").is_file()
    with ray_head({**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}) as address:
        status = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, timeout=120)
        assert status.returncode != 0 and "InvalidAuthToken" in status.stderr
        launch = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}", "lr=0.1", *QUICK)

        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as every process joining by address did before
        # Ray retries a refused connection once a second, 20 times by default; RAY_gcs_server_port_wait_time_s,
        # Ray's setting for how long a process waits for the cluster, cuts that to 2: the same refusal, sooner.
        monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "2")
        refused = tmp_path / "refused"
        refused.mkdir()
        uri = copy_of(empty_store, refused)
        result = run_cli(refused, *launch, f"tracking.uri={uri}")
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        assert (
            f"the Ray cluster at {address} asks for a token and RAY_AUTH_MODE=disabled here: unset RAY_AUTH_MODE "
            "(ray_cluster then joins with token authentication) and put the cluster's token in ~/.ray/auth_token, "
            "RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (`ray get-auth-token` on the head prints it) (docs/clusters-ray.md)"
        ) in result.stderr.splitlines(), result.stderr
        _, parent, children = sweep_runs(uri)
        assert parent.info.status == "FAILED" and children == []

        monkeypatch.delenv("RAY_AUTH_MODE")  # ray_cluster's default: token, here with ~/.ray/auth_token
        monkeypatch.delenv("RAY_gcs_server_port_wait_time_s")
        joined = tmp_path / "joined"
        joined.mkdir()
        uri = copy_of(empty_store, joined)
        result = run_cli(joined, *launch, f"tracking.uri={uri}")
        assert result.returncode == 0, result.stdout + result.stderr
        _, parent, children = sweep_runs(uri)
        assert [run.info.status for run in [parent, *children]] == ["FINISHED", "FINISHED"]


def test_no_token_to_join_with_is_said_in_one_line(ray_cluster, tmp_path, store, monkeypatch):
    home_without_ray_auth(monkeypatch, tmp_path / "home")  # a home without ~/.ray/auth_token
    launch = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}", "lr=0.1", *QUICK)
    result = run_cli(tmp_path, *launch, f"tracking.uri={store}")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert (
        f"cannot join the Ray cluster at {ray_cluster}: RAY_AUTH_MODE=token and no token on this machine: put the "
        "cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN (`ray get-auth-token` on the "
        "head prints it); for a cluster started with RAY_AUTH_MODE=disabled, set RAY_AUTH_MODE=disabled here too "
        "(docs/clusters-ray.md)"
    ) in result.stderr.splitlines(), result.stderr
    _, parent, children = sweep_runs(store)
    assert parent.info.status == "FAILED" and children == []


def test_an_address_nothing_answers_at_is_said_in_one_line_at_once(tmp_path, store):
    # Without the launcher's own check, Ray retries for minutes: longer than run_cli waits.
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(tmp_path, "-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}",
                     "lr=0.1", *QUICK, f"tracking.uri={store}")  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert (
        f"no Ray cluster answers at {address} (Connection refused): start one there (docs/clusters-ray.md) or set "
        "hydra.launcher.ray.init.address"
    ) in result.stderr.splitlines(), result.stderr
    _, parent, children = sweep_runs(store)
    assert parent.info.status == "FAILED" and children == []


def test_a_cluster_that_cannot_start_fails_its_fixture_at_once(tmp_path, monkeypatch):
    # Token authentication asked for with no token anywhere: `ray start` refuses to start. The fixture fails, with
    # what `ray start` wrote, read from a file: it once waited for ever on the pipe of `ray start --block`, which
    # never closes while the cluster runs.
    home_without_ray_auth(monkeypatch, tmp_path / "home")
    with pytest.raises(pytest.fail.Exception, match="exited(.|\n)*no authentication token was found"):
        with ray_head({**os.environ, "RAY_AUTH_MODE": "token"}):
            pass
