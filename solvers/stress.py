"""Stress tests of an equilibrium: multi-start uniqueness probe and robustness under perturbation.

What this module is for: the computations behind ``incentive stress`` (the report and plots
live in ``incentive.stress``):

* :func:`probe_uniqueness`: K starting reward profiles spread over the reward boxes by a
  scrambled Sobol design (``scipy.stats.qmc.Sobol``), each solved from that start and
  certified; the certified answers are clustered (single linkage on rewards relative to
  their box, ``scipy.cluster.hierarchy``); the answer is "unique (spread X)" or the distinct
  equilibria, with the ASP capacities at their kink (``solvers.sensitivity.detect_regime``)
  named when the equilibria differ there.
* :func:`robustness`: N draws of the scenario with chosen fields multiplied by independent
  factors ``1 + u``, ``u ~ U(-rel, rel)`` per entity (:func:`perturbed_scenario`), each
  solved and certified; percentiles of the outcomes, the fraction certified, and the worst
  draw with the scenario that produced it.

Solves run in a process pool (:func:`map_solves` on ``solvers.decomposition.map_unordered``; ``workers=1``
runs them in this process). The pool's workers receive the market or the base scenario once
(initializer, :class:`SolveJob`) and then only task indices and starting points; a
robustness draw is made in the worker from (seed, index).

May import: numpy, scipy, ``market`` and ``solvers``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from market.errors import UserError
from market.model import Market
from market.scenario import Scenario

#: Two certified answers are the same equilibrium when no reward differs by more than this
#: fraction of its box.
CLUSTER_TOLERANCE = 1e-3
#: Tolerance each start is solved to (the certificate still judges at the scenario's tolerance);
#: it pins rewards to ~1e-4 of the box, ten times finer than :data:`CLUSTER_TOLERANCE`.
PROBE_SOLVE_TOLERANCE = 1e-8
#: Outcomes recorded per robustness draw (money, QoE); the first is the default worst-case criterion.
OUTCOMES = ("welfare", "mu_utility_total", "asp_profit_total", "payment_total", "mean_qoe", "mean_reward",
            "max_relative_regret")
PERCENTILES = (5, 25, 50, 75, 95)


# ============================================================================ the pool
_WORKER: dict = {}


@dataclass(frozen=True)
class SolveJob:
    """What every task of one :func:`map_solves` call shares (sent to each worker once)."""

    solver: str
    """Registry name."""
    market: Market | None = None
    """The market every task solves (uniqueness probe), or None."""
    base: Scenario | None = None
    """The scenario each task perturbs (robustness), or None."""
    perturb: dict | None = None
    """Field -> relative bound of the draws (with ``base``)."""
    seed: int = 0
    """Seed of the draws: task i solves :func:`perturbed_scenario` (base, perturb, seed, i)."""
    tolerance: float | None = None
    """Solve tolerance (None: the scenario's)."""


def _init_worker(job: SolveJob) -> None:
    """Keep ``job`` for the tasks (a pool worker ignores Ctrl-C and dies with its parent:
    ``solvers.decomposition.die_with_parent``)."""
    _WORKER["job"] = job


def _solve_task(task):
    """Worker body: task (index, start or None) -> a small record (status, rewards, outcomes)."""
    import solvers
    from solvers.registry import finalize

    job: SolveJob = _WORKER["job"]
    index, start = task
    began = time.perf_counter()
    try:
        if job.market is not None:
            market = job.market
        else:  # drawing here, not in the parent, spreads the validation of big scenarios over the pool
            market = Market.from_scenario(perturbed_scenario(job.base, job.perturb, job.seed, index))
        result = solvers.solve(market, job.solver, tolerance=job.tolerance, initial_rewards=start)
        result = finalize(result, market.tolerance, {})
    except UserError as exc:
        return {"index": index, "status": "error", "message": str(exc), "seconds": time.perf_counter() - began}
    record = {"index": index, "status": result.status, "seconds": time.perf_counter() - began,
              "rewards": result.rewards, "iterations": result.iterations}
    if result.response is not None and result.certificate is not None:
        record.update(outcomes(result))
        record["utility"] = result.utility
        record["qoe"] = result.response.qoe.total
    return record


def map_solves(tasks: list, job: SolveJob, *, workers: int = 2, progress=None) -> list[dict]:
    """Run :func:`_solve_task` over ``tasks`` (``(index, start or None)``) in a process pool.

    Results come back in task order; ``progress()`` is called once per finished task;
    ``workers=1`` runs in this process.
    """
    if workers <= 1 or len(tasks) <= 1:
        _init_worker(job)
        out = []
        for task in tasks:
            out.append(_solve_task(task))
            if progress:
                progress()
        return out
    from solvers.decomposition import map_unordered

    by_index = {}
    chunk = max(1, len(tasks) // (8 * workers))  # fewer round trips; still a smooth progress bar
    for record in map_unordered(_solve_task, tasks, executor="process", workers=workers,
                                worker_setup=_init_worker, worker_setup_args=(job,), chunksize=chunk):
        by_index[record["index"]] = record
        if progress:
            progress()
    return [by_index[task[0]] for task in tasks]


def outcomes(result) -> dict[str, float]:
    """Market-wide outcomes of a solved result (money or QoE; see :data:`OUTCOMES`). Welfare is MU
    utility + ASP profit = sum theta Q - resource cost, as in ``solvers.mechanisms.METRICS``."""
    table = result.asp_table()
    util, profit = float(np.sum(result.utility)), float(np.sum(table["profit"]))
    return {"welfare": util + profit, "mu_utility_total": util, "asp_profit_total": profit,
            "payment_total": float(np.sum(result.payment)), "mean_qoe": float(np.mean(result.response.qoe.total)),
            "mean_reward": float(np.mean(result.rewards)),
            "max_relative_regret": float(result.certificate.max_relative_regret)}


# ============================================================================ uniqueness
def sobol_starts(market: Market, count: int, seed: int = 0) -> np.ndarray:
    """(count, M) starting rewards: a scrambled Sobol design mapped onto the reward boxes."""
    from scipy.stats import qmc

    if count < 1:
        raise UserError(f"--starts must be >= 1, got {count}")
    unit = qmc.Sobol(d=max(market.n_mus, 1), scramble=True, seed=seed).random(count)[:, :market.n_mus]
    return market.reward_min + unit * (market.reward_max - market.reward_min)


@dataclass
class Equilibrium:
    """One distinct certified equilibrium found by the probe."""

    rewards: np.ndarray
    """(M,) rewards of the cluster's first member (money per QoE)."""
    utility: np.ndarray
    """(M,) MU utilities there (money)."""
    starts: list[int]
    """Indices of the starts that reached it."""
    spread: float
    """Largest reward difference inside the cluster, relative to the box."""
    outcomes: dict
    """Market-wide outcomes (:data:`OUTCOMES`)."""
    kinks: list[str] = field(default_factory=list)
    """Capacities at their kink at this equilibrium."""


@dataclass
class UniquenessProbe:
    """What :func:`probe_uniqueness` found."""

    starts: np.ndarray
    """(K, M) starting rewards."""
    records: list[dict]
    """Per start: status, rewards, outcomes, seconds."""
    equilibria: list[Equilibrium]
    """Distinct certified equilibria (largest cluster first)."""
    spread: float
    """Largest reward difference over all certified answers, relative to the box."""
    certified: int
    """Starts whose answer passed the certificate."""
    differing_asps: list[str]
    """ASPs at which the distinct equilibria differ."""
    cause: list[str]
    """Capacity kinks at those ASPs (empty when unique or unexplained)."""
    cluster_tolerance: float = CLUSTER_TOLERANCE
    """Relative reward distance below which answers are merged."""

    @property
    def unique(self) -> bool:
        """One equilibrium among the certified answers (and at least one certified)."""
        return len(self.equilibria) == 1

    def summary(self) -> str:
        """One paragraph: "unique (spread X)" or the distinct equilibria and the cause."""
        k = len(self.records)
        head = f"{self.certified} of {k} starts certified"
        if not self.equilibria:
            return f"{head}: no certified equilibrium found"
        if self.unique:
            return f"unique (spread {self.spread:.2g} of the reward box): {head}, all at one equilibrium"
        lines = [f"NOT unique: {len(self.equilibria)} distinct equilibria ({head}; spread {self.spread:.2g} of the box)"]
        for i, eq in enumerate(self.equilibria[:5]):
            lines.append(f"  #{i + 1}: {len(eq.starts)} starts, MU utility {eq.outcomes['mu_utility_total']:.6g}, "
                         f"ASP profit {eq.outcomes['asp_profit_total']:.6g}, welfare {eq.outcomes['welfare']:.6g}")
        if len(self.equilibria) > 5:
            lines.append(f"  ... {len(self.equilibria) - 5} more (all in stress.json)")
        for key in ("mu_utility_total", "asp_profit_total", "welfare"):
            values = [eq.outcomes[key] for eq in self.equilibria]
            lines.append(f"  {key} ranges over [{min(values):.6g}, {max(values):.6g}] "
                         f"({100 * (max(values) - min(values)) / max(abs(max(values)), 1e-300):.2g}%)")
        where = ", ".join(self.differing_asps)
        if self.cause:
            lines.append(f"  they differ at {where}; cause: " + "; ".join(self.cause))
        else:
            lines.append(f"  they differ at {where}; no capacity kink explains it (please report this market)")
        return "\n".join(lines)


def probe_uniqueness(scenario: Scenario, *, starts: int = 16, seed: int = 0, solver: str | None = None,
                     workers: int = 2, tolerance: float = PROBE_SOLVE_TOLERANCE,
                     cluster_tolerance: float = CLUSTER_TOLERANCE, progress=None) -> UniquenessProbe:
    """Solve from ``starts`` Sobol starting points, certify, cluster, explain.

    Parameters
    ----------
    scenario : Scenario
    starts : number of starting reward profiles (a power of 2 balances the Sobol design).
    seed : scrambling seed of the design.
    solver : registry name (default: the scenario's solver).
    workers : processes (1: in this process).
    tolerance : each start is solved to this relative tolerance, then certified at the
        scenario's tolerance.
    cluster_tolerance : answers closer than this (max over MUs of |r_a - r_b| / box width) merge.
    progress : callable() after each start.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    from solvers.sensitivity import detect_regime

    market = Market.from_scenario(scenario)
    solver = solver or scenario.market.solver
    design = sobol_starts(market, starts, seed)
    tasks = [(i, design[i]) for i in range(starts)]
    records = map_solves(tasks, SolveJob(solver=solver, market=market, tolerance=tolerance), workers=workers,
                         progress=progress)
    good = [r for r in records if r["status"] == "converged"]
    width = np.where(market.reward_max > market.reward_min, market.reward_max - market.reward_min, 1.0)
    if not good:
        return UniquenessProbe(design, records, [], math.nan, 0, [], [], cluster_tolerance)
    points = np.array([r["rewards"] for r in good]) / width
    if len(good) > 1:
        labels = fcluster(linkage(points, method="single", metric="chebyshev"), t=cluster_tolerance, criterion="distance")
    else:
        labels = np.array([1])
    spread = float(np.max(np.ptp(points, axis=0), initial=0.0))
    equilibria = []
    for label in sorted(set(labels), key=lambda lab: -np.sum(labels == lab)):
        members = [good[i] for i in np.flatnonzero(labels == label)]
        pts = np.array([m["rewards"] for m in members]) / width
        regime = detect_regime(market, members[0]["rewards"]) if market.is_closed_form else None
        kinks = regime.describe(market) if regime is not None else []
        equilibria.append(Equilibrium(rewards=members[0]["rewards"], utility=members[0]["utility"],
                                      starts=[m["index"] for m in members],
                                      spread=float(np.max(np.ptp(pts, axis=0), initial=0.0)),
                                      outcomes={k: members[0][k] for k in OUTCOMES}, kinks=kinks))
    differing, cause = [], []
    if len(equilibria) > 1:
        reps = np.array([eq.rewards for eq in equilibria]) / width
        moved = np.ptp(reps, axis=0) > cluster_tolerance
        asps = sorted(set(market.mu_asp[moved].tolist()))
        differing = [market.asp_names[n] for n in asps]
        for n in asps:
            for eq in equilibria:
                for text in eq.kinks:
                    if text.startswith(market.asp_names[n] + " ") and text.split(" (")[0] not in [c.split(" (")[0] for c in cause]:
                        cause.append(text.split(" (")[0])
    return UniquenessProbe(design, records, equilibria, spread, len(good), differing, cause, cluster_tolerance)


# ============================================================================ robustness
ASP_PERTURBABLE = ("accuracy", "seconds_per_token", "max_tokens", "compute_capacity", "bandwidth_capacity",
                   "compute_cost", "bandwidth_cost", "transmit_power_w")
MU_PERTURBABLE = ("weights", "tokens_requested", "deadline_s", "payload_bits", "spectral_efficiency", "distance_m",
                  "value_per_qoe", "reward_min", "reward_max")


def parse_perturbations(specs: list[str]) -> dict[str, float]:
    """``["compute_capacity=0.2", "weights=0.05"]`` -> ``{"compute_capacity": 0.2, ...}``.

    Raises UserError (naming the flag) for an unknown field or a bound outside [0, 1).
    """
    out: dict[str, float] = {}
    known = ASP_PERTURBABLE + MU_PERTURBABLE
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep:
            raise UserError(f"--perturb {spec!r}: expected FIELD=REL, e.g. compute_capacity=0.2")
        if name not in known:
            raise UserError(f"--perturb {spec!r}: unknown field {name!r}; choose from {', '.join(known)}")
        try:
            rel = float(value)
        except ValueError:
            raise UserError(f"--perturb {spec!r}: REL must be a number, got {value!r}") from None
        if not (0.0 <= rel < 1.0) or not math.isfinite(rel):
            raise UserError(f"--perturb {spec!r}: REL must lie in [0, 1), got {rel}")
        out[name] = rel
    return out


def perturbed_scenario(scenario: Scenario, perturb: dict[str, float], seed: int, index: int) -> Scenario:
    """Draw ``index`` of the family: each listed field of each ASP/MU times ``1 + U(-rel, rel)``.

    The factors come from ``numpy.random.default_rng([seed, index])`` (draw i is the same
    whichever process makes it). ``weights`` multiplies each of an MU's three weights
    independently and renormalises them; ``accuracy`` is capped at 1 and ``reward_max`` at
    ``value_per_qoe`` (and ``reward_min`` at ``reward_max``) so that every draw is valid.
    """
    rng = np.random.default_rng([seed, index])
    asps = []
    for asp in scenario.asps:
        changes = {}
        for f in ASP_PERTURBABLE:
            if f in perturb:
                changes[f] = getattr(asp, f) * (1.0 + rng.uniform(-perturb[f], perturb[f]))
        if "accuracy" in changes:
            changes["accuracy"] = min(changes["accuracy"], 1.0)
        asps.append(dataclasses.replace(asp, **changes))
    mus = []
    for mu in scenario.mus:
        changes = {}
        for f in MU_PERTURBABLE:
            if f not in perturb or f == "weights" or getattr(mu, f) is None:
                continue
            changes[f] = getattr(mu, f) * (1.0 + rng.uniform(-perturb[f], perturb[f]))
        if "weights" in perturb:
            w = np.array(dataclasses.astuple(mu.weights)) * (1.0 + rng.uniform(-perturb["weights"], perturb["weights"], 3))
            w = w / w.sum()
            changes["weights"] = type(mu.weights)(*map(float, w))
        new = dataclasses.replace(mu, **changes)
        high = min(new.reward_max, new.value_per_qoe)
        mus.append(dataclasses.replace(new, reward_max=high, reward_min=min(new.reward_min, high)))
    name = f"{scenario.market.name}-draw{index}"
    drawn = dataclasses.replace(scenario, asps=tuple(asps), mus=tuple(mus),
                                market=dataclasses.replace(scenario.market, name=name))
    return Scenario.from_dict(drawn.to_dict(), file=f"<draw {index}>")


def perturbed_scenarios(scenario: Scenario, perturb: dict[str, float], count: int, seed: int = 0) -> list[Scenario]:
    """Draws 0 .. count-1 of :func:`perturbed_scenario`."""
    return [perturbed_scenario(scenario, perturb, seed, i) for i in range(count)]


@dataclass
class Robustness:
    """What :func:`robustness` found."""

    perturb: dict
    """Field -> relative bound of the draws."""
    base: Scenario
    """The unperturbed scenario."""
    seed: int
    """Seed of the draws."""
    records: list[dict]
    """Per draw: status, outcomes, seconds."""
    percentiles: dict
    """Outcome -> {percentile: value} over the certified draws."""
    certified_fraction: float
    """Fraction of draws whose equilibrium passed the certificate."""
    worst_by: str
    """The outcome that defines the worst case (lowest value)."""
    worst: int | None
    """Index of the worst certified draw (None when none is certified)."""
    baseline: dict
    """The unperturbed scenario's outcomes."""

    def draw(self, index: int) -> Scenario:
        """The scenario of draw ``index`` (made again, identically, from the seed)."""
        return perturbed_scenario(self.base, self.perturb, self.seed, index)


def robustness(scenario: Scenario, perturb: dict[str, float], *, samples: int = 64, seed: int = 0,
               solver: str | None = None, workers: int = 2, worst_by: str = "welfare", baseline=None,
               progress=None) -> Robustness:
    """Solve ``samples`` perturbed scenarios; percentiles, certified fraction, worst case."""
    if worst_by not in OUTCOMES[:-1]:
        raise UserError(f"--worst-by must be one of {', '.join(OUTCOMES[:-1])}, got {worst_by!r}")
    if samples < 1:
        raise UserError(f"--samples must be >= 1 for a robustness study, got {samples}")
    solver = solver or scenario.market.solver
    job = SolveJob(solver=solver, base=scenario, perturb=dict(perturb), seed=seed)
    records = map_solves([(i, None) for i in range(samples)], job, workers=workers, progress=progress)
    good = [r for r in records if r["status"] == "converged"]
    pct = {}
    for key in OUTCOMES:
        values = np.array([r[key] for r in good]) if good else np.array([np.nan])
        pct[key] = {p: float(np.percentile(values, p)) for p in PERCENTILES}
    worst = min(good, key=lambda r: r[worst_by])["index"] if good else None
    return Robustness(perturb=dict(perturb), base=scenario, seed=seed, records=records, percentiles=pct,
                      certified_fraction=len(good) / samples, worst_by=worst_by, worst=worst,
                      baseline=dict(baseline or {}))
