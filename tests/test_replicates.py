"""Seeds as replicates: grouping, Student's t intervals, paired contrasts, and a real sweep's summary."""

import csv
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from softmax_exp import replicates, report, summary
from softmax_exp.run_keys import SWEEP_TAG
from tests.conftest import run_cli


def jobs_frame(rows: list[tuple]) -> pd.DataFrame:
    """Jobs as summary.job_table gives them: (group, loss, labels, seed, status, test_acc)."""
    records = []
    for group, loss, labels, seed, status, test_acc in rows:
        params = {"loss": loss, "labels": labels, "optimizer": "torch", "lr": "0.1", "seed": str(seed)}
        records.append(
            {"group": group, "status": status, "loss": loss, "labels": labels, "optimizer": "torch", "lr": 0.1}
            | {
                "seed": seed,
                "test_acc": test_acc,
                "train_acc": test_acc and test_acc + 0.02,
                "train_loss": test_acc and 0.5,
                "params": params,
            }
        )
    return pd.DataFrame(records)


def test_the_95_percent_interval_is_students_t_on_known_values():
    jobs = jobs_frame([("a", "torch", "hard", seed, "FINISHED", value) for seed, value in enumerate([1, 2, 3, 4, 5])])
    (row,) = replicates.group_summary(jobs).to_dict("records")
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445: half width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert row["n"] == 5 and row["test_acc_mean"] == 3
    assert row["test_acc_std"] == pytest.approx(math.sqrt(2.5))
    assert row["test_acc_ci95_low"] == pytest.approx(3 - 1.963243, abs=1e-6)
    assert row["test_acc_ci95_high"] == pytest.approx(3 + 1.963243, abs=1e-6)
    assert (row["test_acc_min"], row["test_acc_max"]) == (1, 5)


def test_a_failed_replicate_is_left_out_of_the_statistics_and_counted():
    values = [0.81, 0.82, 0.80, 0.83]
    rows = [("a", "torch", "hard", seed, "FINISHED", value) for seed, value in enumerate(values)]
    rows.append(("a", "torch", "hard", 4, "FAILED", None))
    rows.append(("b", "torch", "soft", 0, "FINISHED", 0.79))
    groups = replicates.group_summary(jobs_frame(rows)).set_index("group")
    assert (groups.loc["a", "n"], groups.loc["a", "failed"]) == (4, 1)
    assert groups.loc["a", "test_acc_mean"] == pytest.approx(statistics.mean(values))
    assert groups.loc["a", "test_acc_std"] == pytest.approx(statistics.stdev(values))
    # one seed: a mean with no interval, and no claim of replicates for it
    assert groups.loc["b", "n"] == 1 and math.isnan(groups.loc["b", "test_acc_ci95_low"])
    assert list(groups.index) == ["a", "b"]  # best mean first


def test_a_contrast_is_the_paired_difference_between_two_options():
    hard = [0.80, 0.82, 0.81]
    soft = [0.81, 0.84, 0.83]  # differences 0.01, 0.02, 0.02
    rows = [(f"labels={labels}", "torch", labels, seed, "FINISHED", value) for labels, values in
            (("hard", hard), ("soft", soft)) for seed, value in enumerate(values)]  # fmt: skip
    (contrast,) = replicates.contrasts(jobs_frame(rows)).to_dict("records")
    differences = np.subtract(soft, hard)
    low, high = stats.t.interval(0.95, 2, loc=differences.mean(), scale=stats.sem(differences))
    assert (contrast["factor"], contrast["difference"], contrast["pairs"]) == ("labels", "soft - hard", 3)
    assert contrast["mean"] == pytest.approx(differences.mean())
    assert (contrast["ci95_low"], contrast["ci95_high"]) == pytest.approx((low, high))
    assert contrast["verdict"] == "labels=soft is better"
    line = replicates.describe(contrast)
    assert line.startswith("labels soft - hard: +0.0167 (95% CI +0.0023 … +0.0310), 3 pairs")


def test_a_contrast_whose_interval_contains_zero_says_so():
    rows = [("h", "torch", "hard", 0, "FINISHED", 0.80), ("s", "torch", "soft", 0, "FINISHED", 0.81)]
    rows += [("h", "torch", "hard", 1, "FINISHED", 0.82), ("s", "torch", "soft", 1, "FINISHED", 0.81)]
    (contrast,) = replicates.contrasts(jobs_frame(rows)).to_dict("records")
    assert contrast["ci95_low"] < 0 < contrast["ci95_high"]
    assert contrast["verdict"] == "the CI contains 0: no clear difference"


def test_a_sweep_with_seeds_sums_up_each_configuration_with_its_interval_and_the_contrast(tmp_path, store, capsys):
    uri = store
    sweep = ("-m", "hydra/launcher=vectorized", "labels=hard,soft", "seed=0,1,2", "epochs=1", "data.limit=2000")
    result = run_cli(tmp_path, *sweep, f"tracking.uri={uri}")
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6
    by_group = {}
    for child in children:
        by_group.setdefault(child.data.tags[replicates.TAG], []).append(child)
    assert sorted(by_group) == [f"labels={labels},epochs=1,data.limit=2000" for labels in ("hard", "soft")]

    folder = Path(client.download_artifacts(parent.info.run_id, "", str(tmp_path / "parent")))
    groups = {row["group"]: row for row in csv.DictReader((folder / "sweep_groups.csv").open())}
    for group, members in by_group.items():
        values = [child.data.metrics["final_test_acc"] for child in members]
        half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        assert int(groups[group]["n"]) == 3 and int(groups[group]["failed"]) == 0
        assert float(groups[group]["test_acc_mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
        assert float(groups[group]["test_acc_ci95_high"]) == pytest.approx(statistics.mean(values) + half, abs=1e-12)
    best = max(groups.values(), key=lambda row: float(row["test_acc_mean"]))
    assert parent.data.tags["best_config"] == best["group"]
    assert parent.data.metrics["best_config_test_acc_mean"] == pytest.approx(float(best["test_acc_mean"]))

    (contrast,) = list(csv.DictReader((folder / "contrasts.csv").open()))
    seed_of = {child.info.run_id: child.data.params["seed"] for child in children}
    acc = {(child.data.params["labels"], seed_of[child.info.run_id]): child.data.metrics["final_test_acc"]
           for child in children}  # fmt: skip
    differences = [acc["soft", seed] - acc["hard", seed] for seed in ("0", "1", "2")]
    assert contrast["difference"] == "soft - hard" and int(contrast["pairs"]) == 3
    assert float(contrast["mean"]) == pytest.approx(statistics.mean(differences), abs=1e-12)
    for name in ("test_acc_vs_lr.png", "learning_curves_by_group.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    assert "best configuration: " + best["group"] in result.stdout + result.stderr
    assert "contrast: labels soft - hard: " in result.stdout + result.stderr

    # The report in this process: its own command line is run in tests/test_tracking.py.
    assert report.main(["--uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["configuration", "n", "failed"]
    assert lines[2].startswith(best["group"]) and f"{float(best['test_acc_mean']):.4f} ± " in lines[2]
    assert any(line.strip().startswith("labels soft - hard: ") and "3 pairs" in line for line in lines)
    assert report.main(["--uri", uri, "--jobs"]) == 0
    per_job = capsys.readouterr().out.splitlines()
    assert per_job[1].split()[0] == "run_name" and len(per_job) == 8


def test_a_contrast_is_also_given_within_each_value_of_what_else_the_sweep_varies():
    rows = []
    for lr, gain in (("0.01", 0.004), ("0.1", -0.005)):  # soft labels help at one lr and hurt at the other
        for seed in range(3):
            for labels, value in (("hard", 0.80 + seed / 100), ("soft", 0.80 + seed / 100 + gain + seed / 10_000)):
                params = {"loss": "torch", "labels": labels, "optimizer": "torch", "lr": lr, "seed": str(seed)}
                rows.append(
                    {"group": f"labels={labels},lr={lr}", "status": "FINISHED", "loss": "torch", "labels": labels}
                    | {"optimizer": "torch", "lr": float(lr), "seed": seed, "test_acc": value, "params": params}
                )
    found = {row["within"]: row for row in replicates.contrasts(pd.DataFrame(rows)).to_dict("records")}
    assert sorted(found) == ["all", "lr=0.01", "lr=0.1"]
    assert found["all"]["pairs"] == 6 and found["lr=0.1"]["pairs"] == 3
    assert found["lr=0.01"]["mean"] == pytest.approx(0.0041) and found["lr=0.01"]["verdict"] == "labels=soft is better"
    assert found["lr=0.1"]["mean"] == pytest.approx(-0.0049) and found["lr=0.1"]["verdict"] == "labels=hard is better"
    assert replicates.describe(found["lr=0.1"]).startswith("labels soft - hard (lr=0.1): -0.0049 (95% CI ")


@pytest.mark.fast
def test_the_best_is_chosen_on_validation_accuracy_where_the_jobs_have_one():
    """Two configurations whose validation and test accuracies disagree: choosing never looks at the test set."""
    rows = [("a", "torch", "hard", seed, "FINISHED", 0.85) for seed in (0, 1)]  # best on test
    rows += [("b", "torch", "soft", seed, "FINISHED", 0.81) for seed in (0, 1)]  # best on validation
    jobs = jobs_frame(rows).assign(val_acc=[0.80, 0.80, 0.82, 0.83])
    records = jobs.to_dict("records")
    assert summary.chosen_on(records) == "val_acc" and summary.ranked(records)[0]["labels"] == "soft"
    assert replicates.group_summary(jobs, "val_acc")["group"].tolist() == ["b", "a"]
    # Without a validation set, the test accuracy chooses, as it always did.
    plain = jobs.drop(columns="val_acc").to_dict("records")
    assert summary.chosen_on(plain) == "test_acc" and summary.ranked(plain)[0]["labels"] == "hard"
    assert replicates.group_summary(jobs.drop(columns="val_acc"))["group"].tolist() == ["a", "b"]


def test_a_sweep_with_a_validation_set_chooses_on_it_and_gives_the_test_accuracy_beside_it(tmp_path, store, capsys):
    uri = store
    sweep = ("-m", "hydra/launcher=vectorized", "lr=0.02,0.3", "seed=0,1", "epochs=1", "data.limit=2000")
    result = run_cli(tmp_path, *sweep, "data.validation=1000", f"tracking.uri={uri}")
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (parent,) = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    finals = {child.info.run_name: child.data.metrics for child in children}
    assert len(finals) == 4 and all(0.5 < metrics["final_val_acc"] < 1 for metrics in finals.values())

    best = max(finals, key=lambda name: finals[name]["final_val_acc"])
    assert parent.data.tags["best_job"] == best
    assert parent.data.metrics["best_val_acc"] == finals[best]["final_val_acc"]
    assert parent.data.metrics["best_test_acc"] == finals[best]["final_test_acc"]
    val_acc, test_acc = finals[best]["final_val_acc"], finals[best]["final_test_acc"]
    line = f"best job (chosen on validation accuracy): {best}  val_acc={val_acc:.4f}  test_acc={test_acc:.4f}"
    assert line in output

    by_group = {}
    for child in children:
        by_group.setdefault(child.data.tags[replicates.TAG], []).append(child.data.metrics)
    means = {group: {key: statistics.mean(m[f"final_{key}"] for m in members) for key in ("val_acc", "test_acc")}
             for group, members in by_group.items()}  # fmt: skip
    chosen = max(means, key=lambda group: means[group]["val_acc"])
    assert parent.data.tags["best_config"] == chosen
    for key in ("val_acc", "test_acc"):
        assert parent.data.metrics[f"best_config_{key}_mean"] == pytest.approx(means[chosen][key], abs=1e-12)
        low, high = (parent.data.metrics[f"best_config_{key}_ci95_{end}"] for end in ("low", "high"))
        assert low < means[chosen][key] < high
    assert f"best configuration (chosen on validation accuracy): {chosen}  val_acc={means[chosen]['val_acc']:.4f} " in (
        output
    )
    assert f"  test_acc={means[chosen]['test_acc']:.4f} (95% CI " in output

    assert report.main(["--uri", uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:7] == ["configuration", "n", "failed", "val_acc", "(mean", "±", "95%"]
    assert lines[2].startswith(chosen)
    assert lines[-1].startswith(f"best configuration (chosen on validation accuracy): {chosen}  val_acc=")
    assert report.main(["--uri", uri, "--jobs"]) == 0
    per_job = capsys.readouterr().out.splitlines()
    assert per_job[1].split()[-3:] == ["train_acc", "val_acc", "test_acc"] and per_job[2].startswith(best)
    assert per_job[-1] == line
