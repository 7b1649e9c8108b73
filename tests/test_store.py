"""The tracking store's settings refused before any work, and processes started together on a new store."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from softmax_exp import disk, links, store, tracking
from softmax_exp.errors import TrackingError

from .conftest import free_port, run_cli, start_cli

PASSWORD = "s3cret-pw"


def corrupted_store(folder: Path) -> list[str]:
    (folder / "store").mkdir()
    (folder / "store" / "mlflow.db").write_bytes(b"not a database, whatever its name says\n" * 200)
    return [f"tracking.uri=sqlite:///{folder}/store/mlflow.db"]


# Each case: the settings, what the one line must say, and the paths (relative to the working directory)
# that must not exist afterwards. All are started at once: each spends its ~3 s importing, not working.
BAD_SETTINGS = {
    "not a uri": (lambda f: ["tracking.uri=garbage"], "tracking.uri=garbage is not a tracking store", ["garbage"]),
    "relative sqlite": (
        lambda f: ["tracking.uri=sqlite:///relative.db"],
        "tracking.uri=sqlite:///relative.db is a relative path, which would depend on the working directory: "
        "give it absolute, tracking.uri=sqlite:///{f}/relative.db",
        ["relative.db", "relative.db.lock"],
    ),
    "file store": (
        lambda f: [f"tracking.uri=file://{f}/mlruns"],
        "is a plain-folder store, which MLflow 3 refuses",
        ["mlruns"],
    ),
    "unreachable database": (
        lambda f: [f"tracking.uri=postgresql://student:{PASSWORD}@127.0.0.1:{free_port()}/runs"],
        "of tracking.uri=postgresql://student:***@127.0.0.1:",
        [],
    ),
    "unreachable server with credentials": (
        lambda f: [f"tracking.uri=http://student:{PASSWORD}@127.0.0.1:{free_port()}"],
        "MLflow tracking server http://student:***@127.0.0.1:",
        [],
    ),
    "empty experiment": (
        lambda f: [f"tracking.uri=sqlite:///{f}/new/mlflow.db", "tracking.experiment="],
        "tracking.experiment='' is empty: name the MLflow experiment",
        ["new"],
    ),
    "blank experiment": (
        lambda f: [f"tracking.uri=sqlite:///{f}/new/mlflow.db", "tracking.experiment='  '"],
        "tracking.experiment='  ' is empty",
        ["new"],
    ),
    "corrupted store": (
        corrupted_store,
        "{f}/store/mlflow.db is not a readable SQLite database (file is not a database): move it aside",
        ["store/mlflow.db.lock"],
    ),
}


def settings(args: list[str]) -> tuple[str, str]:
    values = dict(arg.split("=", 1) for arg in args)
    return values.get("tracking.uri", "sqlite:////unused/mlflow.db"), values.get("tracking.experiment", "x").strip("'")


@pytest.mark.parametrize("case", BAD_SETTINGS)
def test_each_bad_tracking_setting_is_refused_before_the_store_is_touched(tmp_path, monkeypatch, case):
    """The check every run and sweep makes first (tracking.experiment_id), in this process."""
    monkeypatch.chdir(tmp_path)
    make, message, absent = BAD_SETTINGS[case]
    uri, experiment = settings(make(tmp_path))
    with pytest.raises(TrackingError) as refused:
        tracking.experiment_id(uri, experiment)
    assert message.format(f=tmp_path).removeprefix("error: ") in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert not [path for path in absent if (tmp_path / path).exists()], f"{case} left a file behind"


# The CLI's two paths to the check above: a single run's job, and a sweep before any job starts. Each
# process costs its imports, so one setting each: one that reads a file, one that must leave none behind.
CLI_CASES = [("corrupted store", ()), ("relative sqlite", ("-m", "lr=0.1,0.2"))]


def test_the_cli_says_it_in_one_line_for_a_single_run_and_before_a_sweep_starts(tmp_path):
    for case, mode in CLI_CASES:
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        result = run_cli(folder, *mode, "epochs=1", "data.limit=1000", *BAD_SETTINGS[case][0](folder))
        output = result.stdout + result.stderr
        _, message, absent = BAD_SETTINGS[case]
        assert result.returncode == 1, f"{case}: {output}"
        assert message.format(f=folder) in output, f"{case}: {output}"
        assert "Traceback" not in output and "epoch" not in output and "Launching" not in output, f"{case}: {output}"
        assert not [path for path in absent if (folder / path).exists()], f"{case} left a file behind"


def test_processes_started_together_on_a_new_store_all_succeed(tmp_path):
    """MLflow creates a new SQLite store's tables without a lock: on main, four processes started at once
    all died ("table ... already exists"). Two are enough to show it: without the lock, at least one of two
    failed in each of 3 tries (and 3 processes in the suite's test on 82761f3)."""
    uri = f"sqlite:///{tmp_path}/new/mlflow.db"
    processes = []
    for seed in range(2):
        folder = tmp_path / f"job{seed}"
        folder.mkdir()
        processes.append(start_cli(folder, "epochs=1", "data.limit=1000", f"seed={seed}", f"tracking.uri={uri}"))
    for process in processes:
        output = process.communicate(timeout=240)[0]
        assert process.returncode == 0, output
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id])
    assert sorted(run.data.params["seed"] for run in runs) == ["0", "1"]
    assert {run.info.status for run in runs} == {"FINISHED"}


def test_a_password_never_shows_in_a_uri_the_suite_prints():
    assert store.redacted("postgresql://u:pw@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert store.redacted("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    url = links.where_to_look("https://u:pw@mlflow.example:8443/base", "3", "abc")
    assert url == "https://mlflow.example:8443/base/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert "pw" not in links.ui_command("postgresql://u:pw@db/x")


def test_a_store_in_a_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(TrackingError, match="is a file, not a folder"):
        store.check(f"sqlite:///{tmp_path}/file/mlflow.db", "softmax_exp")


@pytest.fixture
def read_only_disk(tmp_path) -> Iterator[Path]:
    """A real read-only filesystem (tmpfs), mounted for the test."""
    disk = tmp_path / "read_only"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a filesystem here (needs root): {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_a_store_folder_that_cannot_be_made_is_named_with_the_reason(tmp_path, read_only_disk):
    (tmp_path / "file").write_text("")
    cases = {  # the store's folder: where and why the OS refuses to make it
        tmp_path / "file" / "sub": f"in {tmp_path}/file (Not a directory)",
        read_only_disk / "sub": f"in {read_only_disk} (Read-only file system)",
        Path("/proc/nope"): "in /proc (",  # No such file or directory for root, Permission denied for a user
    }
    for folder, why in cases.items():
        (said,) = disk.unmakeable_folders(f"sqlite:///{folder}/mlflow.db", tmp_path / "outputs", "hydra.run.dir")
        assert said.startswith(f"the folder {folder} of the tracking store cannot be made {why}"), said
    (said,) = disk.unmakeable_folders(f"sqlite:///{tmp_path}/new/mlflow.db", Path("/proc/x/run"), "hydra.sweep.dir")
    assert said.startswith("the outputs folder /proc/x/run cannot be made in /proc (")
    assert said.endswith("choose another (hydra.sweep.dir=/OTHER/DIR)")
    assert disk.unmakeable_folders(f"sqlite:///{tmp_path}/new/deeper/mlflow.db", tmp_path / "outputs", "x") == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "read_only"]  # asked, nothing made


def test_the_cli_says_a_store_folder_cannot_be_made_not_that_its_disk_is_full(tmp_path):
    result = run_cli(tmp_path, "tracking.uri=sqlite:////proc/nope/m.db")
    output = result.stdout + result.stderr
    assert "error: the folder /proc/nope of the tracking store cannot be made in /proc (" in output, output
    assert "full" not in output and "Traceback" not in output and "epoch" not in output, output
    assert list(tmp_path.iterdir()) == []  # before Hydra writes anything
