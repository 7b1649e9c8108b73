"""docs/results.md is written from stored runs by the sweep's and the report's code, and the numbers the
README and docs quote from it are the ones it holds."""

import math
import statistics

import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from softmax_exp import results
from softmax_exp.schema import PROJECT_ROOT
from tests.conftest import copy_of, run_cli

SWEEP = ("-m", "experiment=grid", "loss=torch", "lr=0.1", "seed=0,1,2", "epochs=1", "data.limit=500")


@pytest.fixture(scope="module")
def written(tmp_path_factory, empty_store) -> tuple[str, str]:
    """A tiny grid (hard and soft labels, 3 seeds each) in a store of its own, and the results.md written from it."""
    folder = tmp_path_factory.mktemp("results")
    uri = copy_of(empty_store, folder)
    done = run_cli(folder, *SWEEP, f"tracking.uri={uri}")
    assert done.returncode == 0, done.stdout + done.stderr
    return uri, results.write(uri, folder / "out").read_text()


def test_every_named_experiment_has_its_section():
    assert set(results.EXPERIMENTS) == {path.stem for path in (PROJECT_ROOT / "conf" / "experiment").glob("*.yaml")}
    assert set(results.SECTIONS) == set(results.EXPERIMENTS)


def test_results_give_the_command_that_made_them_and_the_seeds_mean_with_its_interval(written):
    uri, text = written
    (command,) = [line for line in text.splitlines() if line.startswith("python -m softmax_exp -m experiment=grid")]
    assert sorted(command.split()[5:]) == sorted(SWEEP[2:])  # what the command line changed, nothing else

    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`mlflow.parentRunId` != ''")
    accuracy = {labels: [r.data.metrics["final_test_acc"] for r in runs if r.data.params["labels"] == labels]
                for labels in ("hard", "soft")}  # fmt: skip

    def cell(values: list[float]) -> str:
        half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        return f"{statistics.mean(values):.4f} ± {half:.4f}"

    (row,) = [line for line in text.splitlines() if line.startswith("| 0.1 |")]
    cells = [part.strip() for part in row.strip("|").split("|")]
    assert cells[1] == cell(accuracy["hard"]) and cells[3] == cell(accuracy["soft"])
    assert cells[2] == f"{min(accuracy['hard']):.4f} … {max(accuracy['hard']):.4f}"
    differences = [s - h for s, h in zip(*(sorted_by_seed(runs, labels) for labels in ("soft", "hard")), strict=True)]
    assert cells[5].startswith(f"{statistics.mean(differences):+.4f} (")
    assert "## distill: not run" in text  # the experiments not in the store say so


def sorted_by_seed(runs, labels: str) -> list[float]:
    chosen = sorted((int(r.data.params["seed"]), r.data.metrics["final_test_acc"]) for r in runs
                    if r.data.params["labels"] == labels)  # fmt: skip
    return [value for _, value in chosen]


def test_the_figures_are_the_sweeps_own(written, tmp_path):
    uri, _ = written
    results.main(["--from-store", uri, "--out", str(tmp_path)])
    assert (tmp_path / "figures" / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "](figures/grid.png)" in (tmp_path / "results.md").read_text()


def test_a_quoted_number_that_results_do_not_hold_is_found(written):
    _, text = written
    (row,) = [line for line in text.splitlines() if line.startswith("| 0.1 |")]
    page = f"Some prose.\n\n{results.OPEN}\n{row}\n{results.CLOSE}\n"
    assert results.unconfirmed(page, text) == []
    hard = row.split("|")[2].strip()  # the hard labels' mean ± half the CI: its last digit changed
    changed = row.replace(hard, hard[:-1] + ("9" if hard[-1] != "9" else "8"), 1)
    assert results.unconfirmed(page.replace(row, changed), text) == [changed]
    assert results.unconfirmed(f"{row} outside the marks", text) == []


@pytest.mark.parametrize("page", ["README.md", *(p.name for p in sorted((PROJECT_ROOT / "docs").glob("*.md")))])
def test_what_the_docs_quote_from_results_is_what_results_hold(page):
    path = PROJECT_ROOT / page if page == "README.md" else PROJECT_ROOT / "docs" / page
    published = (PROJECT_ROOT / "docs" / "results.md").read_text()
    assert results.unconfirmed(path.read_text(), published) == []


def test_the_readme_quotes_its_headline_numbers_from_results():
    assert (PROJECT_ROOT / "README.md").read_text().count(results.OPEN) >= 2
