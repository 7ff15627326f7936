"""Running a :class:`faults.ModelCampaign` into its results database, here, on a local
process pool, or on a Dask distributed cluster.

Workers compute trial results (:func:`faults._worker.run_trials`, a runner with its
golden runs cached per process); this process is the only writer and stores each
batch of results in one transaction as it arrives.  Which trials run where changes
nothing: trial ``i``'s fault and result are pure functions of ``(campaign, i)``.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from urllib.parse import urlsplit
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from models import Workload

from ._spec import ModelCampaign, WorkloadRef
from ._store import CampaignMismatchError, ResultStore
from ._worker import make_runner, run_trials, site_space

__all__ = ["run_model_campaign", "resume_model_campaign", "CampaignRun", "EXECUTORS"]

#: Executors of :func:`run_model_campaign` (a Dask scheduler address selects ``"dask"``).
EXECUTORS = ("process", "serial", "dask")
#: Seconds to wait for a Dask scheduler to answer before giving up.
SCHEDULER_TIMEOUT = 10.0


@dataclass(frozen=True)
class CampaignRun:
    """What one call of :func:`run_model_campaign` / :func:`resume_model_campaign` did.

    Attributes:
        path: the results database; campaign: the campaign; total: trials planned;
        ran: trials run by this call; done: trials stored now; seconds: wall time of
        this call; trial_seconds: wall time from the first trial submitted to the last
        stored (setup excluded); executor: which executor ran them.
    """

    path: Path
    campaign: ModelCampaign
    total: int
    ran: int
    done: int
    seconds: float
    trial_seconds: float
    executor: str

    @property
    def complete(self) -> bool:
        return self.done == self.total


def _batches(ids, size):
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class _Progress:
    """A tqdm bar whose time estimate comes from measured trials only.

    The first batches of a run also pay for start-up (worker processes, golden runs of
    the model, Numba compilation), so an estimate from them is far too long.  Until
    ``warm`` batches are stored the bar shows no estimate; then a fresh bar (starting
    at the trials already stored) measures the rate from there on.
    """

    def __init__(self, total, progress, desc, warm, file=None):
        self.total, self.progress, self.desc, self.warm, self.file = total, progress, desc, warm, file
        self.batches = 0
        self.bar = self._make(0, "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                 "[{elapsed}, estimate after start-up]")

    def _make(self, initial, fmt=None):
        from tqdm import tqdm

        return tqdm(total=self.total, initial=initial, disable=not self.progress, desc=self.desc, unit="trial",
                    smoothing=0.1, bar_format=fmt, file=self.file)

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.batches += 1
        if self.batches == self.warm and self.bar.n < self.total:
            done = self.bar.n
            self.bar.leave = False
            self.bar.close()
            self.bar = self._make(done)

    def close(self) -> None:
        self.bar.close()


def _bar(total, progress, desc, warm=1, file=None):
    return _Progress(total, progress, desc, warm, file)


def _exit_with_parent(parent_pid: int) -> None:
    """Process-pool initializer: this worker ends when its parent process does, by
    any signal (SIGKILL included), instead of living on as an orphan.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``);
    everywhere a daemon thread waits on multiprocessing's parent sentinel (a pipe
    that closes when the parent dies) and checks that the parent is still
    ``parent_pid``, and ends the process with ``os._exit``.  The resource tracker
    then sees its last client gone and exits too.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass  # the thread below still watches
    if os.getppid() != parent_pid:
        os._exit(1)  # the parent died before this worker started
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)

    def watch():
        from multiprocessing.connection import wait as wait_ready

        while True:
            if sentinel is not None:
                if wait_ready([sentinel], timeout=1.0):
                    os._exit(1)
            else:
                time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="gemmfi-parent-watch", daemon=True).start()


def _check_scheduler(scheduler) -> None:
    """Fail fast (within :data:`SCHEDULER_TIMEOUT` s, one line) when a scheduler
    address does not answer, before anything is written."""
    if not isinstance(scheduler, str):
        return  # a distributed.Client: already connected
    parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if parts.scheme not in ("tcp", "tls"):
        return  # another transport (inproc, ucx, ...): Client's own timeout applies
    if not host or not port:
        raise ValueError(f"scheduler must be a Dask scheduler address such as tcp://host:8786, not {scheduler!r}")
    try:
        socket.create_connection((host, port), timeout=SCHEDULER_TIMEOUT).close()
    except OSError as e:
        raise ConnectionError(f"scheduler must be a reachable Dask scheduler, not {scheduler!r} "
                              f"({e.strerror or type(e).__name__} within {SCHEDULER_TIMEOUT:g} s)") from None


def run_model_campaign(campaign: ModelCampaign, path, *, executor: str = "process", workers: int | None = None,
                 scheduler=None, batch_size: int | None = None, progress: bool = False,
                 max_trials: int | None = None) -> CampaignRun:
    """Run a campaign into the database at ``path``, creating it or continuing it.

    A permanent-fault campaign (``fault_model="permanent"``) runs the same way, one
    chip per trial (:class:`faults.ChipResult` rows).

    Args:
        campaign: the :class:`ModelCampaign`.
        path: the SQLite results database.  An existing one must hold this campaign
            (else :class:`faults.CampaignMismatchError`); its stored trials are kept
            and only the missing ones run.
        executor: ``"process"`` (a local process pool, the default; spawned
            processes, so a calling script needs ``if __name__ == "__main__":``),
            ``"serial"`` (this process) or ``"dask"``.
        workers: pool processes (default: ``os.cpu_count()``).
        scheduler: a Dask scheduler address (``"tcp://host:port"``) or a
            ``distributed.Client``; implies ``executor="dask"``.
        batch_size: trials per task (default: about 8 tasks per worker, 4..64 trials).
        progress: show a tqdm progress bar.
        max_trials: stop after this many new trials (None: all).
    Returns:
        A :class:`CampaignRun`.
    """
    if not isinstance(campaign, ModelCampaign):
        raise TypeError(f"campaign must be a ModelCampaign, not {type(campaign).__name__}")
    if scheduler is not None:
        executor = "dask"
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    if executor == "dask" and scheduler is None:
        raise ValueError("scheduler must be a Dask scheduler address or Client for executor 'dask', not None")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an int >= 1 or None, not {workers!r}")
    if executor != "serial" and not isinstance(campaign.model, str):
        raise ValueError(f"executor must be 'serial' for a campaign on an in-memory models.Workload, not "
                         f"{executor!r}: other processes cannot rebuild it; give model='module:function' (a "
                         f"factory returning the Workload) to run it on {executor!r}")
    for name, v in (("batch_size", batch_size), ("max_trials", max_trials)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must be an int >= 1 or None, not {v!r}")
    if executor == "dask":
        _check_scheduler(scheduler)  # before the database is created
    t0 = time.perf_counter()
    path = Path(path)
    if path.exists():
        store = ResultStore.open(path, campaign)  # an edited or other campaign is refused before building anything
        store.close()
    wl = campaign.workload()  # in this process: its digest is checked against the database's
    if path.exists():
        store = ResultStore.open(path, campaign, workload_digest=wl.digest)
    else:
        space = site_space(campaign, wl)
        info = {"ref": campaign.model if isinstance(campaign.model, str) else None, "name": wl.label,
                "digest": wl.digest, "batch": wl.batch, "outcome": wl.outcome_name}
        store = ResultStore.create(path, campaign, space.strata, workload=info)
    try:
        return _execute(store, executor, workers, scheduler, batch_size, progress, max_trials, t0, wl)
    finally:
        store.close()


def resume_model_campaign(path, *, workload: Workload | None = None, **kw) -> CampaignRun:
    """Run the trials a database's campaign is missing (keywords as :func:`run_model_campaign`).

    The workload is rebuilt (the shipped model, or the stored ``"module:function"``
    factory called again) and must have the stored digest, else
    :class:`faults.CampaignMismatchError` naming both and nothing is run.  A campaign
    on an in-memory workload needs it back: ``workload=`` (same digest)."""
    with ResultStore.open(path, readonly=True) as store:
        campaign = store.campaign
    if workload is not None:
        if not isinstance(workload, Workload):
            raise TypeError(f"workload must be a models.Workload or None, not {type(workload).__name__}")
        if not isinstance(campaign.model, WorkloadRef):
            raise ValueError(f"workload must be None for a campaign on {campaign.model!r} (it is rebuilt from "
                             f"there), not a Workload")
        if workload.digest != campaign.model.digest:
            raise CampaignMismatchError(
                f"workload digest must be the stored {campaign.model.digest}, not {workload.digest} (results "
                f"database {str(path)!r}: the workload's parameters or data changed)")
        campaign = campaign.with_(model=workload)
    return run_model_campaign(campaign, path, **kw)


def _execute(store, executor, workers, scheduler, batch_size, progress, max_trials, t0, wl):
    campaign = store.campaign
    pending = store.pending()
    if max_trials is not None:
        pending = pending[:max_trials]
    workers = workers or os.cpu_count() or 1
    if executor == "serial":
        workers = 1
    size = batch_size or max(4, min(64, -(-len(pending) // (8 * workers)) if pending else 4))
    batches = _batches(pending, size)
    cj = campaign.to_json()
    # no time estimate before every worker has stored a batch and one more came in
    bar = _bar(len(pending), progress, f"campaign {campaign.digest}", warm=min(len(batches), workers + 1))
    ts = None

    def store_rows(rows):
        store.write(rows)
        bar.update(len(rows))

    try:
        if not batches:
            ts = None  # nothing left to run: the campaign is complete
        elif executor == "serial":
            runner = make_runner(campaign, wl)
            ts = time.perf_counter()
            for b in batches:
                store_rows(runner.run_many(b))
        elif executor == "process":
            threads = max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")  # JAX is multithreaded: never fork it
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_exit_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                ts = time.perf_counter()
                it = iter(batches)
                inflight = set()
                for b in it:  # at most 2 tasks per worker in flight: little lost work on a kill
                    inflight.add(pool.submit(run_trials, cj, b, threads, wl.digest))
                    if len(inflight) >= 2 * workers:
                        break
                while inflight:
                    done, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                    for f in done:
                        store_rows(f.result())
                        nxt = next(it, None)
                        if nxt is not None:
                            inflight.add(pool.submit(run_trials, cj, nxt, threads, wl.digest))
        else:
            from distributed import Client, as_completed

            try:
                client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout=SCHEDULER_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise ConnectionError(f"scheduler must be a reachable Dask scheduler, not {scheduler!r} ({e})") from None
            try:
                ts = time.perf_counter()
                futs = [client.submit(run_trials, cj, b, 1, wl.digest, pure=False) for b in batches]
                for f in as_completed(futs):
                    store_rows(f.result())
            finally:
                if client is not scheduler:
                    client.close()
    finally:
        bar.close()
    t1 = time.perf_counter()
    return CampaignRun(store.path, campaign, store.total, len(pending), store.count(), t1 - t0,
                       0.0 if ts is None else t1 - ts, executor)
