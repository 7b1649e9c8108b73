"""The CLI for the tests (tests/conftest.py's run_cli and start_cli): each run a process forked from this one, which has
already imported the libraries every run imports (torch, MLflow, Hydra, matplotlib, pandas, SciPy: about 3 s
of a core that each of the suite's many CLI runs would spend again), and has read what MLflow reads once per
process to save a model (0.8 s more).

    python -m tests.forked_cli

Reads one request per line on stdin, as JSON: {"module", "args", "cwd", "env", "stdout", "stderr"}. For each,
forks a process that runs `python -m MODULE ARGS` itself (runpy, as `python -m` does), in `cwd`, with `env` as
its whole environment, its output in the two files (one file for both, if they name the same); prints
{"pid": ...} as it starts, and {"ended": pid, "returncode": ...} as it ends, whenever that is: runs may
overlap. The project's own modules are not imported here, so each run imports them, and registers their
exit handlers, as a fresh process would. Two differences from a fresh process: the exit handlers of the
libraries imported here do not run in the runs, and a run ends without Python's finalization (2 s in a forked
process, whose every object it touches is copied), as softmax_exp's own CLI ends (softmax_exp/__main__.py).
"""

import atexit
import gc
import json
import logging
import os
import runpy
import signal
import sys
import tempfile

gc.disable()  # as softmax_exp/__main__.py: nothing to collect while importing
import hydra  # noqa: E402, F401
import matplotlib.pyplot  # noqa: E402, F401
import mlflow.pytorch  # noqa: E402, F401
import pandas  # noqa: E402, F401
import scipy.stats  # noqa: E402, F401
import torch._dynamo  # noqa: E402, F401  (torch.optim's first optimizer imports it)

gc.enable()

# The first model a process saves has MLflow read the file lists of every installed package, to check the
# model's requirements against them (0.8 s of a core here, then remembered): read once here, not in every run.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # quiet: its warning on the pickle format is for users
with tempfile.TemporaryDirectory() as folder:
    mlflow.pytorch.save_model(
        torch.nn.Linear(1, 1), f"{folder}/model", serialization_format="pickle", pip_requirements=["torch"]
    )
logging.getLogger("mlflow.pytorch").setLevel(logging.NOTSET)


def run(request: dict) -> None:
    """In the forked process: the command line, to its exit."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
    if request["stderr"] == request["stdout"]:
        os.dup2(1, 2)
    else:
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
    sys.path.insert(0, request["cwd"])  # as `python -m` puts the working directory first
    sys.argv = [request["module"], *request["args"]]
    status = 0
    # First of the run's exit handlers, so the last to run: the end of the process once the others have run.
    atexit.register(lambda: (sys.stdout.flush(), sys.stderr.flush(), os._exit(status)))
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as request_to_exit:  # sys.exit(code): None is success, a message means failure
        code = request_to_exit.code
        status = code if isinstance(code, int) else int(code is not None)
        raise
    except BaseException:  # a traceback, printed as the interpreter ends
        status = 1
        raise
    sys.exit(0)  # a module that returns, as the interpreter would end


def reap(signum: int, frame: object) -> None:
    """Each run that has ended, said as it ends; os.write, which a handler may call whatever it interrupted."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left
            return
        if pid == 0:  # the rest still run
            return
        os.write(1, (json.dumps({"ended": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())


signal.signal(signal.SIGCHLD, reap)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the run's own processes are its own to wait for
        run(json.loads(line))
    os.write(1, (json.dumps({"pid": pid}) + "\n").encode())
