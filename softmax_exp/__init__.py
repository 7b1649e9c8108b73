"""Softmax regression on Fashion-MNIST as a Hydra + MLflow experiment suite.

Nothing leaves the machine unasked: MLflow 3 sets up its usage telemetry when it is first imported, so
it is switched off here, before any module of the suite imports MLflow. `tracking.telemetry=true`
switches it back on (softmax_exp/telemetry.py).
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
