"""Ray: sweeps on a Ray cluster the tests start, `hydra/launcher=ray_cluster` against Hydra's shared launcher
suites, and Ray's token authentication.

Every test on the cluster is in this module, which starts one for them (`ray_cluster`) as docs/clusters-ray.md
says: with token authentication, its token given in RAY_AUTH_TOKEN_PATH. Each job finds its sweep's parent run
in the store (softmax_exp/nesting.py), not through the launching process's environment, which Ray workers do
not inherit: they inherit that of `ray start`. The launcher is taken as users take it, from
conf/hydra/launcher/ray_cluster.yaml, put on the search path of the suites' own apps.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from softmax_exp.schema import PROJECT_ROOT

from .conftest import copy_of, free_port, interrupt_a_job_that_drops_it, run_cli
from .test_cluster import QUICK, ctrl_c_once_training, sweep_runs

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("hydra_suite_app")]

CONF = f"hydra.searchpath=[file://{PROJECT_ROOT}/conf]"


RAY = str(Path(sys.executable).parent / "ray")
RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


@contextmanager
def ray_head(env: dict[str, str], timeout: float = 120) -> Iterator[str]:
    """A one-node Ray cluster of 2 cores on loopback, started as `ray start --head` with `env` (its token
    authentication settings among them); yields its address. It fails, rather than wait for ever, when `ray start`
    exits or the cluster does not answer `ray status` within `timeout` s, showing what `ray start` wrote: to a
    file, since the pipe of `ray start --block` never closes. Stopped with its process group (its workers
    included: none has anything to save), and its folder removed: `ray stop` would stop every Ray cluster on the
    machine."""
    folder = Path(tempfile.mkdtemp(prefix="ray-"))  # short: Ray's socket paths must stay under 108 characters
    port = free_port()
    command = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={folder}",
        # ports of their own, so that two clusters can run on the machine at once
        f"--ray-client-server-port={free_port()}", f"--dashboard-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
    ]  # fmt: skip
    log = folder / "ray_start.log"
    with open(log, "w") as output:
        # in its folder: the workers start there, and anything they write by a relative path stays there
        head = subprocess.Popen(command, cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        wait_for_ray(address, {"RAY_AUTH_MODE": "token", **env}, head, log, timeout)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):  # none left, where `ray start` failed
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_ray(address: str, env: dict[str, str], head: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until the cluster answers `ray status`: a failure, never a wait for ever, once `ray start` has exited or
    `timeout` s have passed. `ray status` is asked only once the port answers: before, it would wait minutes."""
    host, port = address.split(":")
    status, deadline = [RAY, "status", f"--address={address}"], time.monotonic() + timeout
    said = "its port never answered"
    while head.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            answer = subprocess.run(status, env=env, capture_output=True, text=True, timeout=30)
            if answer.returncode == 0:
                return
            said = answer.stderr
        except (OSError, subprocess.TimeoutExpired) as error:  # not listening yet, or still starting
            said = str(error)
        time.sleep(1)  # polling the cluster, not waiting for anything in particular
    ended = "exited" if head.poll() is not None else f"did not answer within {timeout:.0f} s"
    pytest.fail(
        f"the Ray cluster at {address} {ended}.\nray start wrote:\n{log.read_text()[-4000:]}\n"
        f"ray status wrote:\n{said[-4000:]}"
    )


@pytest.fixture(scope="module")  # every test on a cluster is in this module: stopped after them, not left idle
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """A Ray cluster started as docs/clusters-ray.md says, with token authentication: its token made by
    `ray get-auth-token --generate` in a home of its own, so this machine's ~/.ray is left alone, and given to
    the cluster and to every process the tests start in RAY_AUTH_TOKEN_PATH. RAY_AUTH_MODE is unset where the
    tests launch sweeps: `ray_cluster` joins with token authentication by default."""
    home = tmp_path_factory.mktemp("ray_home")
    subprocess.run([RAY, "get-auth-token", "--generate"], env={**os.environ, "HOME": str(home)},
                   capture_output=True, check=True, timeout=120)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name in RAY_AUTH_VARIABLES:
            patch.delenv(name, raising=False)
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(home / ".ray" / "auth_token"))
        # The workers inherit the environment of `ray start`, not the launching process's: the project on their path.
        env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(PROJECT_ROOT)}
        with ray_head(env) as address:
            yield address


def test_a_sweep_on_a_ray_cluster_is_one_parent_with_every_job_nested_and_a_failing_one_failed(
    ray_cluster, tmp_path, store
):
    uri = store
    ray = ("-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    # Three jobs on two cores: one of Ray's two workers runs a second job after its first.
    result = run_cli(tmp_path, *ray, "lr=0.05,0.1,1e38", *QUICK, f"tracking.uri={uri}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Ray Launcher is launching 3 jobs" in result.stdout
    assert "1 of 3 jobs failed (lr=1e+38" in result.stdout
    client, parent, children = sweep_runs(uri)
    assert len(children) == 3 and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    status = {r.data.params["lr"]: r.info.status for r in children}
    assert status == {"0.05": "FINISHED", "0.1": "FINISHED", "1e+38": "FAILED"}
    for run in children:  # trained and logged on a worker: history, figures and the job's own log
        assert run.data.tags["mlflow.user"] and "SOFTMAX_EXP" not in str(run.data.tags)
        if run.info.status == "FAILED":
            assert "training diverged at epoch 1" in run.data.tags["error"]
            continue
        assert len(client.get_metric_history(run.info.run_id, "test_acc")) == 1
        assert run.data.metrics["final_test_acc"] > 0.6
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.csv", "softmax_exp.log"} <= artifacts


def test_ctrl_c_on_a_ray_sweep_ends_every_run_killed(ray_cluster, tmp_path, store):
    # The jobs run in Ray's workers, children of `ray start`, out of the signal's reach: the launcher cancels them.
    ray = ("hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_cluster}")
    children = ctrl_c_once_training(tmp_path, store, *ray, "lr=0.01,0.05,0.1,0.2")
    assert 1 <= len(children) <= 2  # 2 cores: two jobs were running, two waiting, and those never started


def test_a_job_that_drops_its_cancel_is_cancelled_again_and_ends_before_its_launcher(ray_cluster, tmp_path):
    output = interrupt_a_job_that_drops_it(tmp_path, "hydra/launcher=ray_cluster", CONF,
                                           f"hydra.launcher.ray.init.address={ray_cluster}")  # fmt: skip
    assert "Ctrl-C: cancelling the sweep's 1 Ray tasks" in output, output


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
