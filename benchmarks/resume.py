"""A sweep killed with `kill -9` halfway through its epochs, then resumed, against the same sweep never interrupted.

    python benchmarks/resume.py [--epochs 10] [--kill-after 5] [--quick]

Runs, in one process after the other on this machine, in stores of their own:
1. the 60-job grid (`-m experiment=grid`, vectorized, lock-step) uninterrupted;
2. the same sweep, killed with SIGKILL once its group has finished epoch --kill-after, then the same command
   with hydra.sweeper.resume=true.
Reports the wall times (the killed part plus the resume against the uninterrupted sweep), and checks what a
resume promises: every job FINISHED exactly once, nothing left RUNNING, one parent run, and each job's final
test accuracy within 1e-3 of the uninterrupted sweep's. --quick: the grid on 5,000 images and 4 epochs.
Writes benchmarks/results/resume.{md,json}; each child's output goes to benchmarks/results/logs/.
"""

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import LOGS, PROJECT, RESULTS, run

SWEEP = ["-m", "softmax_exp", "-m", "experiment=grid"]


def store_state(store: Path) -> dict:
    """Each job's runs (status, final test accuracy) by its choices, and the parents' statuses, read in a child
    process: this one stays free of MLflow and torch."""
    script = (
        "import json,sys; from mlflow.tracking import MlflowClient; c = MlflowClient(sys.argv[1]); "
        "runs = c.search_runs([e.experiment_id for e in c.search_experiments()], max_results=10000); "
        "print(json.dumps({'parents': [r.info.status for r in runs if 'sweep_dir' in r.data.tags], 'jobs': "
        "[[r.data.tags['softmax_exp.job'], r.info.status, r.data.metrics.get('final_test_acc')] "
        "for r in runs if 'sweep_dir' not in r.data.tags]}))"
    )
    out = subprocess.run([sys.executable, "-c", script, f"sqlite:///{store}/mlflow.db"], capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def killed_sweep(args: list[str], after: str) -> float:
    """The sweep started, then killed with SIGKILL once it printed `after`; its wall time until then."""
    log_path = LOGS / "resume_killed.log"
    print(f"[bench] killed sweep: {' '.join(args[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, *args], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in child.stdout:
            log.write(line)
            if after in line:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
    seconds = time.perf_counter() - start
    print(f"[bench] killed sweep: killed after {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--kill-after", type=int, default=5, help="the epoch after which the sweep is killed")
    parser.add_argument("--quick", action="store_true", help="5,000 images, 4 epochs, killed after epoch 2")
    opts = parser.parse_args()
    epochs, kill_after = (4, 2) if opts.quick else (opts.epochs, opts.kill_after)
    scale = [f"epochs={epochs}", *(["data.limit=5000"] if opts.quick else [])]
    LOGS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        whole, broken = Path(folder, "uninterrupted"), Path(folder, "resumed")

        def where(store: Path) -> list[str]:
            return [f"tracking.uri=sqlite:///{store}/mlflow.db", f"hydra.sweep.dir={store}/sweep"]

        uninterrupted = run("resume_uninterrupted", [*SWEEP, *scale, *where(whole)]).seconds
        killed = killed_sweep([*SWEEP, *scale, *where(broken)], f"epoch {kill_after:>3}  jobs training=")
        running = sum(status == "RUNNING" for _, status, _ in store_state(broken)["jobs"])
        resumed = run("resume_resumed", [*SWEEP, *scale, *where(broken), "hydra.sweeper.resume=true"]).seconds
        before, after = store_state(whole), store_state(broken)

    finished = [(job, acc) for job, status, acc in after["jobs"] if status == "FINISHED"]
    expected = {job: acc for job, status, acc in before["jobs"]}
    differences = [abs(acc - expected[job]) for job, acc in finished]
    checks = {
        "jobs FINISHED exactly once": len(finished) == len({job for job, _ in finished}) == len(expected),
        "nothing RUNNING": all(status != "RUNNING" for _, status, _ in after["jobs"])
        and after["parents"] == ["FINISHED"],
        "accuracies within 1e-3 of the uninterrupted sweep": max(differences) <= 1e-3,
    }
    results = {
        "command": " ".join(["python", *SWEEP, *scale]),
        "uninterrupted_seconds": uninterrupted,
        "killed_seconds": killed,
        "runs_left_running": running,
        "resume_seconds": resumed,
        "killed_plus_resume_vs_uninterrupted": (killed + resumed) / uninterrupted,
        "largest_accuracy_difference": max(differences),
        "checks": checks,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "resume.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"`{results['command']}`, killed with SIGKILL after epoch {kill_after} of {epochs}, then resumed:",
        "",
        "| | seconds |",
        "|---|---|",
        f"| uninterrupted sweep | {uninterrupted:.1f} |",
        f"| killed sweep, until killed ({running} runs left RUNNING) | {killed:.1f} |",
        f"| resume | {resumed:.1f} |",
        f"| killed + resume, against uninterrupted | {results['killed_plus_resume_vs_uninterrupted']:.2f}x |",
        "",
        *(f"- {'ok' if ok else 'FAILED'}: {check}" for check, ok in checks.items()),
        f"- largest difference in a job's final test accuracy: {max(differences):.2g}",
    ]
    (RESULTS / "resume.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
