"""Errors a user can fix: each carries one clear message, printed without a traceback."""

from hydra.errors import CompactHydraException


class SoftmaxExpError(CompactHydraException):
    """Base of every error caused by the input (config, data, tracking server), not by a bug."""


class JobError(SoftmaxExpError):
    """A job's own failure, which its configuration alone causes: run again, it fails again."""


class ConfigError(JobError):
    pass


class DataError(SoftmaxExpError):
    pass


class DivergedError(JobError):
    pass


class TrackingError(SoftmaxExpError):
    pass


class DiskFullError(SoftmaxExpError):
    """No room left on the disk of the tracking store or of a run's outputs."""


class TeacherError(ConfigError):
    """labels.teacher names no model that can teach: unloadable, or not 784 pixels in, 10 logits out."""


class ClusterError(SoftmaxExpError):
    """A Ray cluster that cannot be joined: not running where said, or refusing this process's token."""
