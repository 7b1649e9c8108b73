"""hydra/sweeper=search: Optuna's trials in lock-step batches, pruned by successive halving, tuned on validation
accuracy, the study kept in the sweep's folder and continued there."""

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from softmax_exp.halving import Halving
from softmax_exp.run_keys import PRUNED_TAG, SWEEP_TAG, TRIAL_TAG
from softmax_exp.study import JOURNAL
from softmax_exp.train import EpochMetrics

from .conftest import run_cli

SMALL = ("data.validation=1000", "data.limit=3000", "epochs=3")
SEARCH = ("-m", "hydra/sweeper=search", "hydra/launcher=vectorized", *SMALL, "hydra.sweeper.seeds=[0,1]")


def metrics(val_acc: float) -> EpochMetrics:
    return EpochMetrics(1, 0.5, 0.8, 0.8, 0.1, 5.0, val_acc=val_acc)


@pytest.mark.fast
def test_halving_keeps_the_best_fraction_of_trials_by_their_seeds_mean_and_never_a_job_of_no_trial():
    # Learners 0-5 are trials 0, 1, 2 with two seeds each; learner 6 is no trial's.
    halving = Halving(trials={0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2}, rungs=frozenset({1}), keep=1 / 3)
    accuracies = [0.70, 0.80, 0.76, 0.76, 0.74, 0.74, 0.10]  # means: trial 0 0.75, trial 1 0.76, trial 2 0.74
    group = {k: metrics(acc) for k, acc in enumerate(accuracies)}
    assert halving(1, group) == {0, 1, 4, 5}  # trial 1 goes on, both seeds; the job of no trial too
    assert halving(2, group) == set()  # not a rung
    assert Halving(trials={0: 0, 1: 1}, rungs=frozenset({1}), keep=0.01)(1, {0: metrics(0.5), 1: metrics(0.5)}) == {1}


def study_in(sweep_dir: Path) -> optuna.Study:
    journal = optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL))
    return optuna.load_study(study_name="softmax_exp", storage=optuna.storages.JournalStorage(journal))


def trial_runs(uri: str) -> tuple[list, list]:
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("softmax_exp").experiment_id], max_results=1000)
    return [run for run in runs if SWEEP_TAG in run.data.tags], [run for run in runs if SWEEP_TAG not in run.data.tags]


def test_a_search_trains_each_batch_in_lockstep_prunes_and_continues_its_study_in_its_folder(tmp_path: Path, store):
    search = (*SEARCH, "lr=tag(log,interval(0.01,0.5))", "loss=choice(scratch,torch)", "hydra.sweeper.batch=3")
    halving = ("hydra.sweeper.pruner=halving", "hydra.sweeper.rungs=[1]", "hydra.sweeper.keep=0.33")
    first = run_cli(tmp_path, *search, *halving, "hydra.sweeper.n_trials=6", f"tracking.uri={store}")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output
    assert output.count("Vectorized launcher: 6 jobs in this process") == 2  # two batches of 3 trials x 2 seeds
    assert output.count("jobs training=6") == 2 and output.count("jobs training=2") == 4  # 1 of 3 trials goes on
    parents, jobs = trial_runs(store)
    assert len(parents) == 1 and len(jobs) == 12
    assert sorted(int(run.data.tags[TRIAL_TAG]) for run in jobs) == sorted(list(range(6)) * 2)
    assert {run.info.status for run in jobs} == {"FINISHED"}  # pruned runs end FINISHED, tagged
    pruned = [run for run in jobs if PRUNED_TAG in run.data.tags]
    assert len(pruned) == 8 and {run.data.tags[PRUNED_TAG] for run in pruned} == {"1"}
    parent = parents[0]
    assert parent.data.metrics["jobs_failed"] == 0  # pruning is no failure
    best = parent.data.tags["best_trial"]
    best_runs = [run for run in jobs if run.data.tags[TRIAL_TAG] == best]
    assert all(PRUNED_TAG not in run.data.tags for run in best_runs)  # chosen among the trials trained through
    val = sum(run.data.metrics["final_val_acc"] for run in best_runs) / 2
    assert parent.data.metrics["best_trial_val_acc"] == pytest.approx(val)
    assert parent.data.metrics["best_trial_test_acc"] == pytest.approx(
        sum(run.data.metrics["final_test_acc"] for run in best_runs) / 2
    )
    assert json.loads(parent.data.tags["best_trial_params"]).keys() == {"lr", "loss"}
    client = MlflowClient(store)
    trials = pd.read_csv(client.download_artifacts(parent.info.run_id, "trials.csv"))
    assert sorted(trials["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 4  # one of each batch's three went on
    assert "optimization_history.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}

    # The same command with a larger n_trials continues the study, under the same parent run.
    again = run_cli(tmp_path, *search, *halving, "hydra.sweeper.n_trials=9", f"tracking.uri={store}")
    assert again.returncode == 0, again.stdout + again.stderr
    parents, jobs = trial_runs(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(jobs) == 18
    study = study_in(tmp_path / "sweep")
    assert len(study.trials) == 9
    folders = sorted(int(p.name) for p in (tmp_path / "sweep").iterdir() if p.name.isdigit())
    assert folders == list(range(18))  # nothing overwritten


def test_a_diverging_trial_is_told_chance_accuracy_so_the_sampler_learns_to_avoid_it_on_any_launcher(
    tmp_path: Path, store
):
    # Hydra's basic launcher, each job trained alone: a search needs no lock-step to run.
    basic = [arg.replace("hydra/launcher=vectorized", "hydra/launcher=basic") for arg in SEARCH]
    result = run_cli(tmp_path, *basic, "lr=choice(0.1,1e38)", "hydra.sweeper.n_trials=4", "hydra.sweeper.batch=4",
                     "hydra.sweeper.sampler_seed=1", f"tracking.uri={store}")  # fmt: skip
    output = result.stdout + result.stderr
    assert "training diverged at epoch 1" in output and "Traceback" not in output
    assert "Launching 8 jobs locally" in output  # Hydra's basic launcher: 4 trials x 2 seeds, one by one
    study = study_in(tmp_path / "sweep")
    values = {trial.params["lr"]: trial.value for trial in study.trials}
    assert values[1e38] == pytest.approx(0.1) and values[0.1] > 0.5
    assert {trial.state.name for trial in study.trials} == {"COMPLETE"}


def test_a_search_without_held_out_images_is_refused_in_one_line_before_any_trial(tmp_path: Path, store):
    result = run_cli(tmp_path, "-m", "hydra/sweeper=search", "lr=interval(0.01,0.1)", f"tracking.uri={store}")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output
    assert "hydra/sweeper=search scores its trials on held-out training images" in output
    parents, jobs = trial_runs(store)
    assert [run.info.status for run in parents] == ["FAILED"] and jobs == []
