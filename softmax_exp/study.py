"""A search's Optuna study (hydra/sweeper=search): where it lives, and its trials as a table.

It lives in the sweep's folder, as a journal file, unless hydra.sweeper.storage names an Optuna storage.
"""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

JOURNAL = "study.journal"  # the study's file in the sweep's folder, when no storage is given


def is_search(config: DictConfig) -> bool:
    return "n_trials" in config.hydra.sweeper  # hydra/sweeper=search's keys


def load(config: DictConfig, create: bool = False) -> "optuna.Study | None":  # noqa: F821
    """The search's study, as its sweeper keeps it; None where it has none yet (and create is false). Optuna is
    imported here, by a search alone: a grid never needs it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep says what happens: a line per batch
    settings, sweep_dir = config.hydra.sweeper, Path(str(config.hydra.sweep.dir))
    storage = settings.storage
    if storage is None:
        if not create and not (sweep_dir / JOURNAL).is_file():
            return None
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / JOURNAL)))
    return optuna.create_study(
        storage=storage, study_name=settings.study_name, direction="maximize", load_if_exists=True
    )


def trial_table(study) -> pd.DataFrame:
    """A row per trial: its number, state, value (mean final validation accuracy over its seeds) and parameters."""
    table = study.trials_dataframe(attrs=("number", "state", "value", "params"))
    return table.rename(columns=lambda column: column.removeprefix("params_"))
