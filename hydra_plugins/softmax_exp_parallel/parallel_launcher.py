"""softmax_exp's parallel launcher: N worker processes running a sweep's jobs; a worker that dies loses only its job.

    python -m softmax_exp -m hydra/launcher=two_at_a_time lr=0.01,0.1    # conf/hydra/launcher/two_at_a_time.yaml

Hydra's joblib launcher aborts the whole sweep when one of its workers dies (`kill -9`, the OOM killer):
joblib's pool breaks, the job running next to it dies too, and the rest never start. Here each worker is
a process of its own, started once and handed one job at a time through its own pipe. When one dies,
its job is reported FAILED (the sweep's summary counts it, and ends its run), a new worker takes its
place, and the others go on. Each job runs as Hydra's launchers run them (hydra.core.utils.run_job, through
softmax_exp_launch's SweepJob), so it gets its folder, `.hydra/` files, log and callbacks as with any launcher.

Ctrl-C or `kill` of the launching process stops the workers; softmax_exp ends their runs KILLED.
"""

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from hydra_plugins.softmax_exp_launch.stopping import stop_all
from hydra_plugins.softmax_exp_launch.sweep_launcher import SweepLauncher

log = logging.getLogger(__name__)

THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class ParallelLauncherConf:
    _target_: str = "hydra_plugins.softmax_exp_parallel.parallel_launcher.ParallelLauncher"
    n_jobs: int = 2  # worker processes, so jobs running at once (about 1 GB of memory each)
    threads: int | None = None  # per worker, the most its jobs choose (OMP_NUM_THREADS); null: the cores shared out


ConfigStore.instance().store(group="hydra/launcher", name="parallel", node=ParallelLauncherConf)


def work(connection: Connection, threads: int) -> None:
    """A worker: runs the jobs it is handed, one at a time, until the launcher closes its pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the launcher decides
    os.environ.update({name: str(threads) for name in THREAD_SETTINGS})  # before the job's imports load torch
    import cloudpickle

    while True:
        try:
            job = connection.recv_bytes()
        except EOFError:
            return
        job_return = cloudpickle.loads(job)()  # a SweepJob
        connection.send_bytes(cloudpickle.dumps(job_return))


def still_alive(processes: list[multiprocessing.Process], seconds: float) -> list[multiprocessing.Process]:
    """The processes still running once they have all ended, or `seconds` have passed."""
    until = time.monotonic() + seconds
    while processes and time.monotonic() < until:
        wait([process.sentinel for process in processes], timeout=until - time.monotonic())
        processes = [process for process in processes if process.is_alive()]
    return processes


@dataclass
class Worker:
    process: multiprocessing.Process
    connection: Connection
    job: int | None = None  # index of the job it is running


class ParallelLauncher(SweepLauncher):
    def __init__(self, n_jobs: int = 2, threads: int | None = None) -> None:
        super().__init__()
        self.n_jobs, self.threads = n_jobs, threads

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        import cloudpickle  # plugin scans import this module at every start: only once a sweep is launched

        self.start_sweep()
        workers = max(1, min(self.n_jobs, len(job_overrides)))
        threads = self.threads or max(1, (os.cpu_count() or 1) // workers)
        log.info(f"Parallel launcher: {len(job_overrides)} jobs in {workers} worker processes of {threads} thread(s)")
        jobs = [cloudpickle.dumps(job) for job in self.sweep_jobs(job_overrides, initial_job_idx)]
        returns: list[JobReturn | None] = [None] * len(jobs)
        waiting = deque(range(len(jobs)))
        pool = [self.start_worker(threads) for _ in range(workers)]
        try:
            while waiting or any(w.job is not None for w in pool):
                for worker in pool:
                    if worker.job is None and waiting:
                        worker.job = waiting.popleft()
                        overrides = " ".join(filter_overrides(job_overrides[worker.job]))
                        log.info(f"\t#{initial_job_idx + worker.job} : {overrides} (worker {worker.process.pid})")
                        worker.connection.send_bytes(jobs[worker.job])
                busy = {w.connection: w for w in pool if w.job is not None}
                for connection in wait(list(busy)):
                    worker = busy[connection]
                    try:
                        returns[worker.job] = cloudpickle.loads(connection.recv_bytes())
                        worker.job = None
                    except EOFError:  # the worker died: its job alone is lost
                        num = initial_job_idx + worker.job
                        returns[worker.job] = self.lost(worker, num, job_overrides[worker.job], threads, pool)
        finally:
            for worker in pool:
                worker.connection.close()  # an idle worker returns; a busy one is stopped
            busy = [worker.process for worker in pool if worker.job is not None]
            stop_all(busy, lambda process: process.terminate(), still_alive, lambda process: process.kill())
            for worker in pool:
                worker.process.join()
        return returns

    def start_worker(self, threads: int) -> Worker:
        ours, theirs = multiprocessing.Pipe()
        # spawn, not fork: this process holds the sweep's open store connections and MLflow's threads.
        process = multiprocessing.get_context("spawn").Process(target=work, args=(theirs, threads))
        process.start()
        theirs.close()  # so that the worker's death closes the pipe: recv() then raises EOFError
        return Worker(process, ours)

    def lost(self, worker: Worker, num: int, overrides: list[str], threads: int, pool: list[Worker]) -> JobReturn:
        """The JobReturn of a job whose worker died, and a new worker in its place."""
        worker.process.join()
        code = worker.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        error = f"its worker process died ({how}) before the job ended"
        log.error(f"#{num} {' '.join(filter_overrides(overrides))}: error: {error}")
        worker.connection.close()
        pool[pool.index(worker)] = self.start_worker(threads)
        job_return = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
        job_return.return_value = {"status": "FAILED", "error": error}  # as softmax_exp's jobs report failures
        return job_return
