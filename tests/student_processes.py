"""Students' command lines at once, for the load test: each `python -m softmax_exp ARGS` a process of its own.

    python -m tests.student_processes SPEC.json

SPEC holds a list of {"folder": ..., "env": {...}, "args": [...]}. Each process is forked from this one
once it has imported what every one of them imports (torch, MLflow, Hydra, matplotlib: about 5 s of a core
each, 40 s for eight), so that on a few cores the load falls on the server rather than on eight
interpreters starting up. From there each runs the CLI itself (softmax_exp/__main__.py, as `python -m` runs
it), in its folder, with `env` added to the environment, its output in FOLDER/output.txt. One difference:
the exit handlers of the modules imported here (MLflow's, logging's) do not run in the processes, as
softmax_exp/__main__.py's own one ends them first; nothing this CLI logs waits on them.
Prints one JSON line: each process's exit status, and the seconds from the first start to the last end.
"""

import gc
import json
import os
import runpy
import sys
import time
from pathlib import Path

gc.disable()  # as softmax_exp/__main__.py: nothing to collect while importing
import matplotlib.pyplot  # noqa: E402, F401
import mlflow.pytorch  # noqa: E402, F401
import torch._dynamo  # noqa: E402, F401  (torch.optim's first optimizer imports it)

import hydra_plugins.softmax_exp_vectorized.vectorized_launcher  # noqa: E402, F401
import softmax_exp.main  # noqa: E402, F401
import softmax_exp.sweep  # noqa: E402, F401

gc.enable()

students = json.loads(Path(sys.argv[1]).read_text())
sys.stdout.flush()  # nothing buffered here may be written again by each child
start = time.monotonic()
children = []
for student in students:
    pid = os.fork()
    if pid == 0:  # the student's process: from here on, only the CLI; its exit ends the process
        os.chdir(student["folder"])
        os.environ.update(student["env"])
        output = os.open(Path(student["folder"]) / "output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        sys.argv = ["softmax_exp", *student["args"]]
        runpy.run_module("softmax_exp", run_name="__main__", alter_sys=True)
        sys.exit(0)  # not reached when the CLI exits by itself
    children.append(pid)
statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(json.dumps({"statuses": statuses, "seconds": time.monotonic() - start}))
