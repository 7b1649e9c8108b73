"""`python -m softmax_exp [overrides]`: the command line, with the garbage collector tuned for a short process."""

import gc

# Importing torch, MLflow and Hydra creates about a million objects that live until exit, and the collector
# would walk them again and again as they pile up: 1-1.5 s of a 10 s run. So collect nothing while importing,
# then set everything imported aside for good (gc.freeze) and collect as usual from there on.
gc.disable()
from softmax_exp.main import cli  # noqa: E402

gc.freeze()
gc.enable()
try:
    cli()
finally:
    # Nothing is used after this: spare the interpreter's final collection of what the run created.
    gc.freeze()
