"""softmax_exp's Hydra launcher plugin: submitit launchers whose Ctrl-C cancels the sweep's jobs (`slurm`,
`slurm_local`), in _submitit_launchers.py.

Hydra instantiates only the launchers its plugin scan found, and the scan imports this package at every
start, where a missing import would be a warning: the launchers are imported here where Hydra's submitit
plugin, whose configs they take, is installed (the `cluster` extra), and not otherwise.
"""

from importlib.util import find_spec

if find_spec("hydra_plugins.hydra_submitit_launcher"):
    from hydra_plugins.softmax_exp_submitit._submitit_launchers import LocalLauncher, SlurmLauncher  # noqa: F401
