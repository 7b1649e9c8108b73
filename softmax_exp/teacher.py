"""The teacher of labels=teacher: any MLflow PyTorch model that maps rows of 784 pixels to 10 logits.

It is loaded, checked and measured once, before any training, so a bad URI costs no training time.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow.artifacts
import mlflow.pytorch
import torch
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from torch import nn

from softmax_exp.data import Split, to_unit_interval
from softmax_exp.errors import TeacherError
from softmax_exp.model import CLASSES, PIXELS

ROWS = 1000  # images turned into floats at a time: 3 MB, not 188 MB for the training set


@dataclass(frozen=True)
class Teacher:
    uri: str  # as given in labels.teacher
    run_id: str | None  # the run the model was logged from; None for a model saved outside any run
    model: nn.Module
    pixel_scale: float  # the model takes pixels in [0, pixel_scale]: its run's data.pixel_scale, else 1
    test_acc: float  # its accuracy on the 10,000 test images, measured when loaded

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits (N, 10) for rows of pixel bytes (N, 784)."""
        return logits_of(self.model, images, self.pixel_scale)


@torch.no_grad()
def logits_of(model: nn.Module, images: torch.Tensor, pixel_scale: float) -> torch.Tensor:
    return torch.cat([model(to_unit_interval(rows, scale=pixel_scale)) for rows in images.split(ROWS)])


def first_line(error: Exception) -> str:
    return (str(getattr(error, "message", error)).strip().splitlines() or [type(error).__name__])[0]


@contextmanager
def tracking_store(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `uri` for a while: MLflow 3.17 resolves runs:/<id>/model to its
    logged model (models:/m-...) in the global store, whatever tracking_uri the download was given."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def load_model(uri: str, tracking_uri: str) -> tuple[nn.Module, str | None, float]:
    """The model behind `uri`, resolved in the job's tracking store; the run that logged it; its pixel scale."""
    with tempfile.TemporaryDirectory() as folder, tracking_store(tracking_uri):
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=folder, tracking_uri=tracking_uri, registry_uri=tracking_uri
            )
            model = mlflow.pytorch.load_model(local, map_location="cpu")
            run_id = Model.load(local).run_id
            params = MlflowClient(tracking_uri).get_run(run_id).data.params if run_id else {}
        except Exception as error:  # a bad URI, a missing run or file, another flavor, an unpicklable model
            raise TeacherError(
                f"labels.teacher={uri}: cannot load a PyTorch model from it ({first_line(error)}); give an MLflow "
                "model URI of this tracking store, e.g. runs:/<run_id>/model or models:/<name>/<version>"
            ) from None
    # 1: the suite's default input, and the README's contract for a model saved outside any run.
    return model, run_id, float(params.get("data.pixel_scale", 1.0))


def check_shapes(uri: str, model: nn.Module) -> None:
    """The student's targets need 10 logits for each row of 784 pixels: refuse any other model now."""
    probe = torch.zeros(2, PIXELS)
    try:
        with torch.no_grad():
            out = model(probe)
    except Exception as error:  # a model built for other inputs fails in its own way (shape, dtype, rank)
        raise TeacherError(
            f"labels.teacher={uri}: the model does not take rows of {PIXELS} pixels ({first_line(error)})"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, CLASSES):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TeacherError(
            f"labels.teacher={uri}: the model must give {CLASSES} logits per image, but maps (2, {PIXELS}) to {shape}"
        )


def load_teacher(uri: str, tracking_uri: str, test: Split, device: torch.device) -> Teacher:
    """Load, check and measure the teacher; a TeacherError (one line) if it cannot serve as one."""
    model, run_id, pixel_scale = load_model(uri, tracking_uri)
    check_shapes(uri, model)
    model = model.to(device).eval()
    predicted = logits_of(model, test.images.to(device), pixel_scale).argmax(dim=1)
    test_acc = (predicted == test.labels.to(device)).sum().item() / len(test.labels)
    return Teacher(uri, run_id, model, pixel_scale, test_acc)
