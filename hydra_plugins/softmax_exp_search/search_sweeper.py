"""softmax_exp's search sweeper: Optuna asks for a batch of trials, and the batch is ONE launch, so the
vectorized launcher trains all its trials (each once per seed) in lock-step; any other launcher works too.

    python -m softmax_exp -m hydra/sweeper=search data.validation=10000 \
        'lr=tag(log,interval(0.001,1))' 'loss=choice(scratch,torch)' \
        hydra.sweeper.n_trials=48 hydra.sweeper.batch=16 hydra.sweeper.pruner=halving

The search space is written in Hydra's override grammar: choice(...) and a comma list are categorical,
range(a,b[,step]) integers, interval(a,b) floats, tag(log, interval(a,b)) on a log scale. A trial is scored by
its final validation accuracy, the mean over hydra.sweeper.seeds: the test set is never looked at to choose.
With pruner=halving, the batch's trials are ranked at each rung epoch and all but the best `keep` leave the
stack (softmax_exp/halving.py); a pruned trial is told to Optuna as pruned, a diverging one with chance
accuracy, so that the sampler learns to avoid that region. The study lives in the sweep's folder (or in
`storage`); n_trials is the study's total, so the same command with a larger n_trials and the same
hydra.sweep.dir continues it, under the same parent run.

Written on Hydra's public plugin API and Optuna's ask/tell API. Hydra imports this module when it looks for
plugins, at every start: Optuna is imported only when a search starts.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import OmegaConf

from hydra_plugins.softmax_exp_sweep.launching_sweeper import LaunchingSweeper

log = logging.getLogger(__name__)

CHANCE = 1 / 10  # the accuracy a diverged trial is told: no better than guessing one of ten classes


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.softmax_exp_search.search_sweeper.SearchSweeper"
    # The search space in Hydra's override grammar, {lr: "tag(log,interval(0.001,1))"}; on the command line, quoted
    # ('+hydra.sweeper.params.lr="tag(log,interval(0.001,1))"': Hydra refuses a sweep in its own keys), or as the
    # key's own override ('lr=tag(log,interval(0.001,1))'), as with Hydra's Optuna sweeper.
    params: dict[str, str] = field(default_factory=dict)
    n_trials: int = 16  # the study's total: run again with more to continue it
    batch: int = 8  # trials asked for at once, and launched as one batch (one lock-step group on vectorized)
    seeds: list[int] = field(default_factory=lambda: [0])  # each trial runs once per seed, scored by the mean
    sampler_seed: int = 0  # TPE's, offset by the trials already in the study so that a continued study draws anew
    pruner: str | None = None  # null, or halving: successive halving of each batch's trials in lock-step
    rungs: list[int] = field(default_factory=lambda: [1, 3])  # halving: epochs after which the trials are ranked
    keep: float = 1 / 3  # halving: the fraction of trials that go on at each rung (1/eta)
    storage: str | None = None  # an Optuna storage URL; null: a journal file in the sweep's folder
    study_name: str = "softmax_exp"
    # A search in a folder that holds its study always continues it; resume=true says so, as for a grid, and
    # refuses a folder without one (softmax_exp.resume).
    resume: bool = False


ConfigStore.instance().store(group="hydra/sweeper", name="search", node=SearchSweeperConf)


def distribution(value):
    """The Optuna distribution of one parameter of the search space, or None for a fixed value."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(value.list)
    if isinstance(value, RangeSweep):
        return IntDistribution(int(value.start), int(value.stop) - 1, step=int(value.step or 1))
    if isinstance(value, IntervalSweep):
        return FloatDistribution(value.start, value.end, log="log" in value.tags)
    return None


def trial_state(returns: list[JobReturn]):
    """How a trial ended, from its seeds' jobs: (Optuna's state, its value, the epoch it was pruned at)."""
    from optuna.trial import TrialState

    results = [job.return_value for job in returns]
    if any(result["status"] == "PRUNED" for result in results):
        epoch = max(result["pruned_at_epoch"] for result in results if result["status"] == "PRUNED")
        return TrialState.PRUNED, fmean(result["val_acc"] for result in results if "val_acc" in result), epoch
    if any(result.get("error_type") == "DivergedError" for result in results):
        return TrialState.COMPLETE, CHANCE, None
    if any(result["status"] != "FINISHED" for result in results):
        return TrialState.FAIL, None, None
    return TrialState.COMPLETE, fmean(result["val_acc"] for result in results), None


class SearchSweeper(LaunchingSweeper):
    def __init__(self, **settings) -> None:
        super().__init__()
        self.settings = OmegaConf.structured(SearchSweeperConf(**settings))
        if self.settings.pruner not in (None, "halving"):
            raise HydraException(f"hydra.sweeper.pruner={self.settings.pruner}: use null or halving")

    def space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """The distributions to search, and the overrides every job gets as they are."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.settings.params.items()]
        distributions, fixed = {}, []
        for override in parser.parse_overrides(params + arguments):
            key = override.get_key_element()
            found = distribution(override.value()) if override.is_sweep_override() else None
            if found is not None:
                distributions[key] = found
            elif override.is_sweep_override():
                raise HydraException(f"{key}: hydra/sweeper=search searches choice, range and interval, not this")
            else:
                fixed.append(f"{key}={override.get_value_element_as_str()}")
        if not distributions:
            raise HydraException("hydra/sweeper=search has nothing to search: give hydra.sweeper.params.KEY=...")
        return distributions, fixed

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        import optuna
        from optuna.trial import TrialState

        from softmax_exp import resume
        from softmax_exp.study import load

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if not (sweep_dir / resume.ASKED).is_file():
            OmegaConf.save(self.config, sweep_dir / resume.ASKED)
        distributions, fixed = self.space(arguments)
        self.check_validation(fixed)
        study, returns = load(self.config, create=True), []
        # A continued study draws anew: the same seed would ask for the same trials again.
        study.sampler = optuna.samplers.TPESampler(
            seed=self.settings.sampler_seed + len(study.trials), constant_liar=True
        )
        for interrupted in study.get_trials(states=[TrialState.RUNNING]):  # its process was killed: asked again
            study.tell(interrupted.number, state=TrialState.FAIL)
            study.enqueue_trial(interrupted.params)
        first = resume.next_job_number(sweep_dir)
        while (
            left := self.settings.n_trials
            - len(study.get_trials(states=[TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]))
        ) > 0:
            trials = [study.ask(distributions) for _ in range(min(self.settings.batch, left))]
            batch = [self.overrides(trial, fixed, seed) for trial in trials for seed in self.settings.seeds]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=first)
            first += len(batch)
            seeds = len(self.settings.seeds)
            for i, trial in enumerate(trials):
                state, value, pruned_at = trial_state(results[i * seeds : (i + 1) * seeds])
                if state == TrialState.PRUNED:
                    trial.report(value, pruned_at)
                study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
            returns.append(results)
            best = study.best_trial if any(t.state == TrialState.COMPLETE for t in study.trials) else None
            if best is not None:
                log.info(f"search: {len(study.trials)} of {self.settings.n_trials} trials; best so far #{best.number} "
                         f"val_acc={best.value:.4f} {best.params}")  # fmt: skip
        return returns

    def check_validation(self, fixed: list[str]) -> None:
        """A search chooses on held-out images: refuse one without, in one line, before any trial."""
        from softmax_exp.errors import ConfigError

        given = [o.partition("=")[2] for o in fixed if o.partition("=")[0] == "data.validation"]
        validation = int(given[-1]) if given else self.config.data.validation
        if validation <= 0:
            raise ConfigError(
                "hydra/sweeper=search scores its trials on held-out training images, and data.validation=0 holds "
                "none out: set data.validation=N (e.g. 10000), so that the test set is never used to choose"
            )

    def overrides(self, trial, fixed: list[str], seed: int) -> list[str]:
        """A trial's job for one seed: its parameters, the fixed overrides, and how its group prunes its trials."""
        params = [
            f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}" for key, value in trial.params.items()
        ]
        pruning = [f"pruning.trial={trial.number}"]
        if self.settings.pruner == "halving":
            pruning += [
                f"pruning.rungs=[{','.join(map(str, self.settings.rungs))}]",
                f"pruning.keep={self.settings.keep}",
            ]
        return [*fixed, *params, f"seed={seed}", *pruning]
