"""What the suite's sweepers share with Hydra's: what setup() is given, kept, and the launcher Hydra's config
names, made, to hand each batch of jobs to."""

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.softmax_exp_launch.composed_configs import ComposedConfigs


class LaunchingSweeper(Sweeper):
    """A sweeper still to write its sweep(), which hands its batches to self.launcher."""

    def __init__(self) -> None:
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def validate_batch_is_legal(self, batch) -> None:
        """Hydra's check that every job of the batch composes; all at once where the config loader keeps what it
        composes for the launcher (the vectorized launcher's)."""
        loader = self.hydra_context.config_loader
        if isinstance(loader, ComposedConfigs):
            loader.compose(self.config, [list(overrides) for overrides in batch])
        else:
            super().validate_batch_is_legal(batch)
