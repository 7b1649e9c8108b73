"""`python -m softmax_exp.report` on bad input: one line each, a non-zero exit, no traceback, nothing made.

A sweep's report on real runs is tested with the sweeps themselves (tests/test_tracking.py, test_replicates.py).
"""

import pytest
from mlflow.tracking import MlflowClient

from softmax_exp import store
from softmax_exp.errors import TrackingError
from softmax_exp.run_keys import SWEEP_TAG

from .conftest import copy_of, free_port, run_cli

QUOTED = "it's"  # a sweep's name is its overrides, and a value may hold a quote


@pytest.fixture
def quoted_sweep(tmp_path, empty_store) -> tuple[str, str]:
    """A store holding a sweep (a parent run, no jobs yet) named with a quote; its URI and run id."""
    (tmp_path / "quoted").mkdir()
    uri = copy_of(empty_store, tmp_path / "quoted")
    client = MlflowClient(uri)
    experiment = client.create_experiment("softmax_exp")
    return uri, client.create_run(experiment, run_name=QUOTED, tags={SWEEP_TAG: "true"}).info.run_id


def test_the_report_says_bad_input_in_one_line_and_makes_nothing(tmp_path, quoted_sweep):
    uri, run_id = quoted_sweep
    missing, empty = tmp_path / "nope" / "x.db", tmp_path / "empty.db"
    empty.write_bytes(b"")  # SQLite's empty database, which MLflow would fill with its tables
    refused = {  # arguments: what the one line says
        ("--uri", "garbage"): "error: tracking.uri=garbage is not a tracking store MLflow can use here",
        ("--uri", f"http://127.0.0.1:{free_port()}"): "is unreachable (",
        ("--uri", f"sqlite:///{missing}"): f"error: there is no tracking store at {missing}: give the path",
        ("--uri", f"sqlite:///{empty}"): f"error: {empty} is a SQLite database but not an MLflow tracking store",
        ("--uri", uri, 'say "hi"'): "no sweep 'say \"hi\"' in experiment 'softmax_exp' of",
        ("--uri", uri, '"it\'s"'): "error: '\"it\\'s\"' holds both kinds of quote, which an MLflow search",
    }
    for args, said in refused.items():
        result = run_cli(tmp_path, *args, module="softmax_exp.report")
        assert result.returncode == 1, f"{args}: {result.stdout}{result.stderr}"
        assert result.stdout == "" and len(result.stderr.splitlines()) == 1 and said in result.stderr, result.stderr
    found = run_cli(tmp_path, "--uri", uri, QUOTED, module="softmax_exp.report")
    assert found.returncode == 0 and "Traceback" not in found.stderr, found.stderr
    assert found.stdout.startswith(f"sweep {QUOTED} ({run_id}), {uri}\nrun_name")
    assert not missing.parent.exists() and empty.stat().st_size == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["empty.db", "quoted"]  # no ./mlruns, no store


def test_a_search_filter_value_is_quoted_with_the_kind_of_quote_it_does_not_hold():
    assert store.quoted("labels=soft") == "'labels=soft'"
    assert store.quoted("it's") == '"it\'s"'
    assert store.quoted('say "hi"') == "'say \"hi\"'"
    with pytest.raises(TrackingError, match="holds both kinds of quote"):
        store.quoted('it\'s "both"')
