"""`python -m softmax_exp [overrides]`: the command line, with start-up and exit tuned for a short process."""

import atexit
import os
import sys

exit_status = 1  # until cli() ends otherwise


def exit_without_native_teardown() -> None:
    """The last exit handler: end the process once every other one (logging, MLflow) has run.

    Python's own finalization would then run the C++ destructors of torch's CUDA build, which page about
    100 MB of its libraries back into memory and take 0.4 s, to free what the OS frees anyway.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_status)


atexit.register(exit_without_native_teardown)  # first registered, so last to run

import gc  # noqa: E402

# Importing torch, MLflow and Hydra creates about a million objects that live until exit, and the collector
# would walk them again and again as they pile up: 1-1.5 s of a 10 s run. So collect nothing while importing,
# then set everything imported aside for good (gc.freeze) and collect young objects as usual from there on.
# Full collections are made 10x rarer: the modules imported later, on first use (torch._dynamo for
# torch.optim, MLflow's SQL store), would otherwise set off about five of them per run (0.5 s).
gc.disable()
from softmax_exp.main import cli  # noqa: E402

gc.freeze()
gc.set_threshold(700, 10, 100)  # the defaults are (700, 10, 10)
gc.enable()
try:
    cli()
    exit_status = 0
except SystemExit as request:  # sys.exit(code): None is success, a message means failure
    exit_status = request.code if isinstance(request.code, int) else int(request.code is not None)
    raise
