"""Seeds as replicates: a sweep's jobs grouped by their configuration less the seed, each group summed up
as a mean with a 95% confidence interval, and paired contrasts between the two options of a choice.

Why: the last-iterate test accuracy of one configuration moves by about ±0.01 from seed to seed, as much
as the differences people sweep for, so one run per configuration ranks lucky seeds. Failed jobs are left
out of the statistics and counted.
"""

import numpy as np
import pandas as pd

TAG = "softmax_exp.group"  # on every job's run: its configuration less the seed, for the UI's "Group by"
METRICS = ("test_acc", "train_acc", "train_loss")  # final values, summed up per group
VALIDATED_METRICS = ("val_acc", *METRICS)  # those of jobs with a validation set (data.validation)
FACTORS = ("loss", "labels", "optimizer")  # choices a contrast compares, when a sweep tries two options
CONFIDENCE = 0.95


def t_half_width(sem: pd.Series, n: pd.Series) -> pd.Series:
    """Half the width of the Student's t confidence interval of a mean: t(n - 1) quantile x standard error.
    NaN for n < 2: one value says nothing about its spread."""
    if not (n > 1).any():  # a sweep without replicates: no interval, and no need to import scipy
        return pd.Series(np.nan, index=n.index)
    # Imported here, as every run imports this module for TAG. stdtrit(df, p) is the t quantile that
    # scipy.stats.t.ppf(p, df) returns (its own kernel, the same numbers): scipy.stats would take 0.95 s to
    # import, scipy.special 0.14 s.
    from scipy.special import stdtrit

    quantile = stdtrit((n - 1).where(n > 1), (1 + CONFIDENCE) / 2)
    return pd.Series(quantile, index=n.index) * sem


def metrics_of(jobs: pd.DataFrame) -> tuple[str, ...]:
    """The final metrics summed up for these jobs: val_acc too where they have one."""
    return VALIDATED_METRICS if "val_acc" in jobs and jobs["val_acc"].notna().any() else METRICS


def group_summary(jobs: pd.DataFrame, best: str = "test_acc") -> pd.DataFrame:
    """One row per group of `jobs` (columns group, status, the FACTORS, lr and METRICS, val_acc if any): its
    choices, n finished, failed, and per metric mean, std, min, max, ci95_low, ci95_high. Best mean of the
    metric `best` first (summary.chosen_on says which)."""
    finished = jobs[jobs["status"] == "FINISHED"]
    table = jobs.groupby("group")[[*FACTORS, "lr"]].first()
    table["n"] = finished.groupby("group").size().reindex(table.index, fill_value=0)
    # A search's pruned trials (status PRUNED) are neither: they trained well, only not to the last epoch.
    table["failed"] = (~jobs["status"].isin(["FINISHED", "PRUNED"])).groupby(jobs["group"]).sum().reindex(table.index)
    for metric in metrics_of(jobs):
        summary = finished.groupby("group")[metric].agg(["mean", "std", "min", "max", "sem"]).reindex(table.index)
        half = t_half_width(summary["sem"], table["n"])
        for column in ("mean", "std", "min", "max"):
            table[f"{metric}_{column}"] = summary[column]
        table[f"{metric}_ci95_low"] = summary["mean"] - half
        table[f"{metric}_ci95_high"] = summary["mean"] + half
    return table.sort_values(f"{best}_mean", ascending=False, na_position="last").reset_index()


def has_replicates(summary: pd.DataFrame) -> bool:
    return bool((summary["n"] > 1).any())


def pairing_key(params: dict[str, str], factor: str) -> tuple:
    """Everything about a run but its `factor` choice (seed included): runs with equal keys differ only there."""
    return tuple(sorted((k, v) for k, v in params.items() if k != factor and not k.startswith(f"{factor}.")))


CONTRAST_COLUMNS = ["factor", "difference", "within", "metric", "pairs", "mean", "ci95_low", "ci95_high", "verdict"]


def contrasts(jobs: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """For each factor the finished jobs try exactly two options of: the paired difference (second option
    minus first, alphabetically) over the pairs of runs that differ only in that choice, with its 95% CI;
    over all pairs (within "all"), then within each value of every other key the sweep varies (e.g. each
    lr), since a difference can change sign from one setting to the next."""
    finished = jobs[jobs["status"] == "FINISHED"]
    rows = []
    for factor in FACTORS:
        options = sorted(finished[factor].dropna().unique())
        if len(options) != 2:
            continue
        keys = finished["params"].map(lambda params, factor=factor: pairing_key(params, factor))
        paired = finished.assign(key=keys)
        rows += paired_difference(paired, factor, options, metric, "all")
        for key in strata(finished):
            for value, stratum in paired.groupby(paired["params"].map(lambda params, key=key: params.get(key))):
                rows += paired_difference(stratum, factor, options, metric, f"{key}={value}")
    return pd.DataFrame(rows, columns=CONTRAST_COLUMNS)


def strata(finished: pd.DataFrame) -> list[str]:
    """The keys besides the factors and the seed that take more than one value among the finished jobs."""
    values = pd.DataFrame(list(finished["params"]))
    varied = [key for key in values.columns if values[key].nunique() > 1]
    return [key for key in varied if key != "seed" and key.split(".")[0] not in FACTORS]


def paired_difference(paired: pd.DataFrame, factor: str, options: list[str], metric: str, within: str) -> list[dict]:
    pairs = paired.pivot_table(index="key", columns=factor, values=metric).dropna()
    if pairs.empty or not set(options) <= set(pairs.columns):
        return []
    differences = pairs[options[1]] - pairs[options[0]]
    half = t_half_width(pd.Series([differences.sem()]), pd.Series([len(differences)])).iloc[0]
    mean = differences.mean()
    low, high = mean - half, mean + half
    return [
        {"factor": factor, "difference": f"{options[1]} - {options[0]}", "within": within, "metric": metric}
        | {"pairs": len(differences), "mean": mean, "ci95_low": low, "ci95_high": high}
        | {"verdict": verdict(factor, options, mean, low, high)}
    ]


def verdict(factor: str, options: list[str], mean: float, low: float, high: float) -> str:
    if np.isnan(low):
        return "one pair: no interval"
    if low <= 0 <= high:
        return "the CI contains 0: no clear difference"
    better = options[1] if mean > 0 else options[0]
    return f"{factor}={better} is better"


def describe(contrast: dict) -> str:
    """One line, e.g. `labels soft - hard (lr=0.1): -0.0052 (95% CI -0.0070 … -0.0012), 10 pairs; labels=hard is
    better`."""
    within = "" if contrast["within"] == "all" else f" ({contrast['within']})"
    return (
        f"{contrast['factor']} {contrast['difference']}{within}: {contrast['mean']:+.4f} "
        f"(95% CI {contrast['ci95_low']:+.4f} … {contrast['ci95_high']:+.4f}), {contrast['pairs']} pairs; "
        f"{contrast['verdict']}"
    )
