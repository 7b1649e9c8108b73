"""MLflow's usage telemetry: reports on how MLflow is used, sent to MLflow's servers; off unless asked for.

The package turns it off before MLflow is first imported (softmax_exp/__init__.py); `tracking.telemetry`
decides once the config is composed. The variable is inherited by the processes this one starts (a
parallel launcher's workers). MLflow also honours DO_NOT_TRACK=true, which wins over the setting.
"""

import os

SWITCH = "MLFLOW_DISABLE_TELEMETRY"


def enabled() -> bool:
    return os.environ.get(SWITCH, "").lower() != "true"


def apply(enable: bool) -> None:
    """Follow tracking.telemetry; MLflow's client is set up again only when the setting changes it."""
    if enable == enabled():
        return
    from mlflow.telemetry import set_telemetry_client  # MLflow's own way to re-read the switch

    os.environ[SWITCH] = "false" if enable else "true"
    set_telemetry_client()
