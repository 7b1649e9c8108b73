"""softmax_exp's vectorized launcher: every job of a multirun in this one process, trained in lock-step.

    python -m softmax_exp -m hydra/launcher=vectorized loss=scratch,torch lr=0.01,0.05,0.1 seed=0,1,2,3,4

Each job still gets what Hydra's basic launcher gives it: its own composed config, its output folder with
`.hydra/config.yaml`, `hydra.yaml`, `overrides.yaml` and its log file, on_job_start and on_job_end, and a
JobReturn. Only the training is shared: softmax_exp.jobs.run_jobs trains the jobs that can step together
as one group, and each job's run, log and numbers stay its own.

It runs softmax_exp's jobs only (softmax_exp.main's task function, whose work it takes over: it never calls
the task function it is given). Handed another app's, it says so in one line before any job runs: that app
needs one of Hydra's launchers (basic) or softmax_exp's parallel one.

Hydra imports this module when it looks for plugins, at every start: torch and MLflow are imported only
when a sweep is launched.
"""

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, env_override
from hydra.errors import CompactHydraException, HydraException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.softmax_exp_launch.composed_configs import ComposedConfigs
from hydra_plugins.softmax_exp_launch.sweep_launcher import SweepLauncher

log = logging.getLogger(__name__)


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.softmax_exp_vectorized.vectorized_launcher.VectorizedLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf)


@dataclass
class StartedJob:
    config: DictConfig  # the job's whole config, hydra node included
    job_return: JobReturn
    job: object  # softmax_exp.job.Job (imported once a sweep is launched)


def job_logger(num: int, job_logging: DictConfig) -> logging.Logger:
    """A logger that writes to this job's own log file(s), as its hydra.job_logging says; not to the terminal,
    where one line per epoch speaks for the whole group."""
    spec = OmegaConf.to_container(job_logging, resolve=True)
    logger = logging.getLogger(f"softmax_exp.job.{num}")
    logger.propagate = False
    logger.setLevel(spec.get("root", {}).get("level", logging.INFO))
    for handler_spec in spec.get("handlers", {}).values():
        if "filename" not in handler_spec:
            continue
        handler = get_class(handler_spec["class"])(handler_spec["filename"], mode=handler_spec.get("mode", "a"))
        formatter = spec.get("formatters", {}).get(handler_spec.get("formatter"), {})
        handler.setFormatter(logging.Formatter(formatter.get("format"), formatter.get("datefmt")))
        handler.setLevel(handler_spec.get("level", logging.NOTSET))
        logger.addHandler(handler)
    return logger


def close_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def one_setting(configs: list[DictConfig], key: str):
    """A setting Hydra applies to a job's whole process, which the jobs sharing this one must agree on."""
    values = {repr(OmegaConf.select(config, key)) for config in configs}
    if len(values) > 1:
        raise HydraException(
            f"{key} differs between the jobs, but the vectorized launcher runs them all in one process: "
            "set it once for the sweep, or use hydra/launcher=basic"
        )
    return OmegaConf.select(configs[0], key)


class VectorizedLauncher(SweepLauncher):
    def __init__(self) -> None:
        super().__init__()
        self.configs: ComposedConfigs | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        name = getattr(task_function, "__qualname__", type(task_function).__qualname__)  # a function, or a callable
        task = f"{task_function.__module__}.{name}"
        if task != "softmax_exp.main.main":
            raise CompactHydraException(  # one line, without a traceback
                f"hydra/launcher=vectorized runs softmax_exp's own jobs only (softmax_exp.main), not {task}: "
                "use hydra/launcher=basic, or parallel, for another app"
            )
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.configs = ComposedConfigs(hydra_context.config_loader)
        hydra_context.config_loader = self.configs  # the sweeper shares this context: its checks now keep them

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        from softmax_exp.jobs import run_jobs  # torch and MLflow: only once a sweep is launched

        self.start_sweep()
        log.info(f"Vectorized launcher: {len(job_overrides)} jobs in this process, trained in lock-step")
        saved_hydra_config = HydraConfig.instance().cfg
        started = []
        try:
            for i, overrides in enumerate(job_overrides):
                started.append(self.start(list(overrides), initial_job_idx + i))
            configs = [p.config for p in started]
            if one_setting(configs, "hydra.job.chdir"):
                raise HydraException(
                    "hydra.job.chdir=true: the vectorized launcher runs every job in one working directory; "
                    "use hydra/launcher=basic to run each job in its own"
                )
            with env_override(one_setting(configs, "hydra.job.env_set")):
                results = run_jobs([p.job for p in started])
        finally:
            for p in started:
                close_log(p.job.log)
            HydraConfig.instance().cfg = saved_hydra_config
        for p, result in zip(started, results, strict=True):
            self.finish(p, result)
        return [p.job_return for p in started]

    def start(self, overrides: list[str], num: int) -> StartedJob:
        """What Hydra's run_job does before the task runs: config, output folder, .hydra/ files, log, on_job_start."""
        from softmax_exp.job import Job

        config = self.configs.take(self.config, overrides)
        with open_dict(config):
            config.hydra.job.id = num
            config.hydra.job.num = num
        HydraConfig.instance().set_config(config)  # ${hydra:...} resolves against the job whose config is set
        hydra_config = HydraConfig.instance().cfg  # set_config's copy of the hydra node, this job's from now on
        output_dir = Path(str(config.hydra.sweep.dir), str(config.hydra.sweep.subdir)).absolute()
        for node in (config, hydra_config):  # written in both, as setting the config again would (a copy: 4 ms)
            with read_write(node.hydra.runtime), open_dict(node.hydra.runtime):
                node.hydra.runtime.output_dir = str(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)

        task_config = copy.deepcopy(config)
        with read_write(task_config), open_dict(task_config):
            del task_config["hydra"]
        job_return = JobReturn(
            overrides=list(config.hydra.overrides.task),
            cfg=task_config,
            hydra_cfg=hydra_config,
            working_dir=os.getcwd(),
            task_name=JobRuntime.instance().get("name"),
        )
        if config.hydra.output_subdir is not None:
            record = output_dir / str(config.hydra.output_subdir)
            record.mkdir(parents=True, exist_ok=True)
            for name, node in (
                ("config", task_config),
                ("hydra", hydra_config),
                ("overrides", config.hydra.overrides.task),
            ):
                (record / f"{name}.yaml").write_text(OmegaConf.to_yaml(node), encoding="utf-8")

        resolved = copy.deepcopy(task_config)
        OmegaConf.resolve(resolved)  # now, while this job's Hydra config is the current one
        job = Job.of(resolved, hydra_config.hydra, log=job_logger(num, config.hydra.job_logging))
        self.hydra_context.callbacks.on_job_start(config=config, task_function=self.task_function)
        return StartedJob(config, job_return, job)

    def finish(self, started: StartedJob, result: dict) -> None:
        """What run_job does after the task: the JobReturn, then on_job_end."""
        started.job_return.return_value = result
        started.job_return.status = JobStatus.COMPLETED
        if result.get("status") == "FAILED":
            overrides = " ".join(started.job_return.overrides)
            log.error(f"#{started.config.hydra.job.num} {overrides}: error: {result['error']}")
        HydraConfig.instance().cfg = started.job_return.hydra_cfg  # the job's own, as its start left it
        self.hydra_context.callbacks.on_job_end(config=started.config, job_return=started.job_return)
