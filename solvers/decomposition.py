"""Decomposition: with the association fixed, the market splits into independent per-ASP games.

What this module is for: an MU's utility depends only on its own reward and those of the
MUs at its own ASP (followers are independent), so the equilibrium of the market is the
union of the equilibria of its per-ASP games, and each MU's regret is computed inside its
ASP's game. :func:`solve_sharded` groups the ASPs into shards of about equal MU count,
solves and certifies every shard independently (serially, on a local process pool, or on
Ray), and combines the shard certificates (max regret, max KKT residual, summed NashConv).

From a columnar scenario (``market.columnar``) the driver reads only the ``asp`` column to
plan the shards; each worker reads its own shard's rows from the Parquet file (a filter on
``asp``, row groups of other ASPs skipped), validates them with the shared rules, solves,
certifies, and writes its result rows as one part file of the output folder
(``mus/part-K.parquet``, ``asps/part-K.parquet``); only a small summary returns to the
driver, so whole arrays never pass through it.

Executors follow ``incentive.study.run_sweep`` (``"serial"``, ``"process"`` with
``concurrent.futures``, ``"ray"``: ``ray.init(num_cpus=workers, include_dashboard=False)``
with ``RAY_AUTH_MODE=disabled``); :func:`map_unordered` is that dispatch as a function.
MU names are checked for duplicates within each shard only.

May import: numpy, ray (lazily), ``market`` (``market.columnar`` needs pyarrow) and
``solvers.registry``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from market.errors import UserError

EXECUTORS = ("serial", "process", "ray")


def die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: end this worker when the process that started it dies.

    On Linux the kernel sends SIGKILL when the parent goes (``prctl(PR_SET_PDEATHSIG)``,
    called through ctypes: no library wraps it); elsewhere a daemon thread polls the parent
    once a second. Ctrl-C reaches the whole process group: the worker ignores it and the
    parent ends the pool; SIGTERM gets its default action (the CLI's handler is inherited on fork).
    """
    import signal
    import sys
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            armed = libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def _start_worker(parent_pid: int, worker_setup, worker_setup_args: tuple) -> None:
    """Pool-worker initializer: :func:`die_with_parent`, then the caller's own set-up."""
    die_with_parent(parent_pid)
    if worker_setup is not None:
        worker_setup(*worker_setup_args)


def map_unordered(function, args: list, *, executor: str = "serial", workers: int = 2,
                  worker_setup=None, worker_setup_args: tuple = (), chunksize: int = 1):
    """Yield ``function(a)`` for every ``a`` in ``args`` as they finish (any order).

    ``executor``: ``"serial"`` (in this process), ``"process"`` (a local pool whose workers die
    with this process, :func:`die_with_parent`) or ``"ray"`` (``workers`` CPUs of a local cluster
    started here, or the cluster already initialised). ``function`` must be picklable.
    ``worker_setup(*worker_setup_args)`` runs once in each pool worker (process executor only;
    a serial caller sets up its own process), and ``chunksize`` tasks travel per round trip.
    """
    if executor not in EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "serial" or len(args) <= 1 or (executor == "process" and workers <= 1):
        for a in args:
            yield function(a)
    elif executor == "process":
        import multiprocessing

        pool = multiprocessing.Pool(processes=workers, initializer=_start_worker,
                                    initargs=(os.getpid(), worker_setup, worker_setup_args))
        try:
            yield from pool.imap_unordered(function, args, chunksize=chunksize)
        except BaseException:
            pool.terminate()  # Ctrl-C, SIGTERM, an error or an abandoned generator: no worker outlives us
            raise
        else:
            pool.close()
        finally:
            pool.join()
    else:
        if worker_setup is not None:
            raise ValueError("worker_setup is supported by the process executor only")
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs the ray package (pip install 'aigc-incentive[scale]')") from None
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        started = False
        if not ray.is_initialized():
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started = True
        try:
            remote = ray.remote(num_cpus=1)(function)
            pending = [remote.remote(a) for a in args]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                yield ray.get(ready[0])
        finally:
            if started:
                ray.shutdown()


def plan_shards(mu_counts: np.ndarray, shards: int) -> list[np.ndarray]:
    """Group ASP indices into ``shards`` groups of about equal MU count (greedy, largest first)."""
    shards = max(1, min(int(shards), int(np.count_nonzero(mu_counts)) or 1))
    load = np.zeros(shards)
    groups: list[list[int]] = [[] for _ in range(shards)]
    for n in np.argsort(-mu_counts, kind="stable"):
        if mu_counts[n] == 0:
            continue
        k = int(np.argmin(load))
        groups[k].append(int(n))
        load[k] += mu_counts[n]
    return [np.array(sorted(g), dtype=np.intp) for g in groups if g]


@dataclass(frozen=True)
class ShardTask:
    """One shard's work order (small: names and paths, no arrays of MUs)."""

    index: int
    """Shard number (names the part files)."""
    scenario: str
    """Columnar scenario folder."""
    asp_names: tuple
    """The shard's ASPs."""
    rows: np.ndarray
    """Global row numbers of the shard's MUs in ``mus.parquet`` (for error messages)."""
    out: str | None
    """Folder the part files go to (None: do not write)."""
    solver: str = "dual-perturbation"
    """Registry name."""
    tolerance: float | None = None
    """Certificate tolerance (default: the scenario's)."""


@dataclass
class ShardSummary:
    """What a worker sends back: figures, never per-MU arrays."""

    index: int
    n_asps: int
    n_mus: int
    status: str
    max_relative_regret: float
    max_regret: float
    nashconv: float
    kkt_residual: float
    max_relative_reward_distance: float
    floor_violation: float
    tolerance: float
    iterations: int
    read_s: float
    solve_s: float
    certificate_s: float
    write_s: float
    pid: int = field(default_factory=os.getpid)


def run_shard(task: ShardTask) -> ShardSummary:
    """Read, validate, solve, certify and write one shard (runs in a worker)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from market.columnar import load_columnar_shard, write_result_tables
    from solvers.registry import solve

    tick = time.perf_counter()
    columnar = load_columnar_shard(task.scenario, task.asp_names, task.rows)
    market = columnar.to_market()
    read_s = time.perf_counter() - tick
    result = solve(market, task.solver, tolerance=task.tolerance)
    write_s = 0.0
    if task.out is not None:
        tick = time.perf_counter()
        mus, asps = result.to_columns()
        folder = Path(task.out)
        write_result_tables(folder, mus, asps, part=task.index)
        write_s = time.perf_counter() - tick
    c = result.certificate
    return ShardSummary(index=task.index, n_asps=market.n_asps, n_mus=market.n_mus, status=result.status,
                        max_relative_regret=c.max_relative_regret, max_regret=c.max_regret, nashconv=c.nashconv,
                        kkt_residual=c.kkt_residual, max_relative_reward_distance=c.max_relative_reward_distance,
                        floor_violation=c.floor_violation, tolerance=c.tolerance, iterations=result.iterations,
                        read_s=read_s, solve_s=result.solve_time_s, certificate_s=result.certificate_time_s,
                        write_s=write_s)


@dataclass
class ShardedResult:
    """The combined answer of a sharded solve."""

    shards: list
    """:class:`ShardSummary` per shard, in shard order."""
    plan_s: float
    """Driver time to read the ``asp`` column and plan the shards (s)."""
    wall_s: float
    """Wall time of the whole sharded solve (s)."""
    executor: str
    workers: int

    @property
    def passed(self) -> bool:
        """Every shard's certificate passed (then the market's does: regrets and KKT are per ASP)."""
        return all(s.status == "converged" for s in self.shards)

    def summary(self) -> dict:
        """JSON-ready: the combined certificate, per-shard figures and timings."""
        s = self.shards
        return {
            "status": "converged" if self.passed else "not_certified",
            "certificate": {
                "max_relative_regret": max(x.max_relative_regret for x in s),
                "max_regret": max(x.max_regret for x in s),
                "nashconv": float(sum(x.nashconv for x in s)),
                "kkt_residual": max(x.kkt_residual for x in s),
                "max_relative_reward_distance": max(x.max_relative_reward_distance for x in s),
                "floor_violation": max(x.floor_violation for x in s),
                "tolerance": s[0].tolerance,
                "passed": self.passed,
            },
            "n_mus": int(sum(x.n_mus for x in s)), "n_asps": int(sum(x.n_asps for x in s)),
            "executor": self.executor, "workers": self.workers, "plan_s": self.plan_s, "wall_s": self.wall_s,
            "shard_cpu_s": float(sum(x.read_s + x.solve_s + x.certificate_s + x.write_s for x in s)),
            "shards": [vars(x) for x in s],
        }


def solve_sharded(scenario: str | Path, *, shards: int = 2, executor: str = "serial", workers: int = 2,
                  out: str | Path | None = None, solver: str = "dual-perturbation",
                  tolerance: float | None = None) -> ShardedResult:
    """Solve and certify a columnar scenario shard by shard (see the module docstring).

    ``out``: an existing (staging) folder; the workers write ``mus/part-K.parquet`` and
    ``asps/part-K.parquet`` into it.
    """
    from market.columnar import plan_columnar_shards

    start = time.perf_counter()
    asp_names, asp_of_row = plan_columnar_shards(scenario)
    counts = np.bincount(asp_of_row, minlength=len(asp_names))
    groups = plan_shards(counts, shards)
    order = np.argsort(asp_of_row, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    tasks = []
    for k, group in enumerate(groups):
        rows = np.sort(np.concatenate([order[bounds[n]:bounds[n + 1]] for n in group]))
        tasks.append(ShardTask(index=k, scenario=str(scenario), asp_names=tuple(asp_names[n] for n in group),
                               rows=rows, out=None if out is None else str(out), solver=solver, tolerance=tolerance))
    del order, asp_of_row
    plan_s = time.perf_counter() - start
    results = sorted(map_unordered(run_shard, tasks, executor=executor, workers=workers), key=lambda s: s.index)
    return ShardedResult(shards=results, plan_s=plan_s, wall_s=time.perf_counter() - start, executor=executor,
                         workers=workers)
