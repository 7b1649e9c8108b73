"""A batch's job configs composed at once, in this process and forked ones: the same configs, in the same order,
as Hydra composing them one by one; and a job that does not compose says why, as it would one by one."""

import pytest
from hydra import initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from hydra_plugins.softmax_exp_launch.composed_configs import JOBS_PER_PROCESS, ComposedConfigs

BATCH = [[f"lr={lr}", f"loss={('scratch', 'torch')[i % 2]}", f"seed={i}"] for i, lr in enumerate((0.5, 0.1) * 4)]


@pytest.fixture
def loader_and_master():
    with initialize(version_base="1.3", config_path="../conf"):
        loader = GlobalHydra.instance().config_loader()
        yield loader, loader.load_configuration("config", [], RunMode.MULTIRUN)


@pytest.mark.fast
def test_a_batch_composed_at_once_is_the_batch_composed_one_by_one(loader_and_master):
    loader, master = loader_and_master
    assert len(BATCH) >= 2 * JOBS_PER_PROCESS  # composed in two processes where there are two cores
    one_by_one = [loader.load_sweep_config(master, overrides) for overrides in BATCH]
    configs = ComposedConfigs(loader)
    configs.compose(master, BATCH)
    for overrides, expected in zip(BATCH, one_by_one, strict=True):
        taken = configs.take(master, overrides)
        assert OmegaConf.to_yaml(taken) == OmegaConf.to_yaml(expected)
        assert OmegaConf.get_type(taken) is OmegaConf.get_type(expected) and OmegaConf.is_struct(taken)
        assert (taken.lr, taken.seed, list(taken.hydra.overrides.task)) == (expected.lr, expected.seed, overrides)
    assert not any(configs.composed.values())  # each config taken once


@pytest.mark.fast
def test_a_job_that_does_not_compose_says_why_as_hydra_does(loader_and_master):
    loader, master = loader_and_master
    batch = [*BATCH[:-1], ["lr=fast"]]  # the last job: composed by another process
    with pytest.raises(ConfigCompositionException, match="lr=fast") as raised:
        ComposedConfigs(loader).compose(master, batch)
    assert "Value 'fast' of type 'str' could not be converted to Float" in str(raised.value.__cause__)
