"""Reference EPEC solver written independently in Pyomo and solved by Ipopt.

What this module is for: a second, independent formulation of the market equilibrium
(design note ``market-model.md``) that an operations-research user can read and trust:

* each follower (ASP) appears only through its KKT conditions, written with
  :mod:`pyomo.mpec` (``complements``): stationarity of every served MU's compute and
  bandwidth share, and "capacity multiplier >= 0  _|_  unused capacity >= 0";
* each leader (MU) solves an MPEC -- maximise its own utility over its reward box subject
  to its ASP's KKT conditions -- by Ipopt on Scholtes' relaxation ``a * b <= eps`` of the
  complementarity (Pyomo's ``mpec.simple_nonlinear`` transformation, the one behind
  ``SolverFactory("mpec_nlp")``) with a ladder ``eps -> 0`` and warm starts, inside a
  Gauss-Seidel loop over the leaders (``method="gauss-seidel"``);
* for small instances, the joint system of every leader's stationarity condition (with
  the followers' sensitivities obtained by differentiating their KKT system, Pyomo's
  symbolic differentiation) and every follower's KKT conditions, solved at once as one
  relaxed MPCC (``method="joint"``).

Leaders interact only through their own ASP's shadow prices, so every formulation is
built and solved per ASP. Nothing here uses the closed form, the market's follower code
or any gradient of the default solver: only the data arrays of :class:`market.Market`.
The answer is certified by :func:`solvers.certificate.certify`, like every solver's.

Scaling (the physical quantities are many orders apart): rewards are written as
``rho = r / theta`` (dimensionless), allocations as shares ``phi = f / F``,
``beta = b / B``, and each stationarity condition is multiplied by the share squared and
divided by ``W = sum_j theta_j x_j`` so that every coefficient is O(1). The capacity
multiplier ``p`` is the scaled ``mu * F^2 / W``; the ASP's shadow price is
``k + mu``.

Model variants: ``asp_cost = "quadratic"`` (stationarity ``... = (2 k f + mu) f^2``) and
``bandwidth_model = "shannon"`` (rate ``b log2(1 + snr_hz / b)``) are written too.

Ipopt: the ``ipopt`` executable is found on ``PATH``, in ``sys.prefix/bin`` (where
``.ci/build_ipopt.sh`` installs it; ``python -m pytest`` does not put the venv on
``PATH``), or from the ``IPOPT_EXECUTABLE`` environment variable. When none is found,
:func:`solve` raises :class:`IpoptUnavailableError` (a :class:`market.errors.UserError`)
saying how to build it. Debugging: ``PYOMO_REF_DEBUG=1`` prints every Ipopt termination
condition, ``PYOMO_REF_TEE=1`` Ipopt's own log.

Test: ``tests/solvers/test_pyomo_reference.py``; speed: ``bench/bench_pyomo.py``; the
formulation in full: ``docs/mechanisms.md``.

May import: numpy, pyomo (lazily, inside functions), ``market`` and ``solvers``.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from market.errors import InfeasibleError, UserError

#: Environment variable naming the ipopt executable explicitly.
IPOPT_ENV = "IPOPT_EXECUTABLE"
#: Default Scholtes relaxation ladder for the first solve of each leader MPEC.
DEFAULT_LADDER = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
#: Shorter ladder once warm-started from the previous round.
WARM_LADDER = (1e-8, 1e-10, 1e-12)
#: Lower bound of a resource share (keeps ``1 / share`` finite for Ipopt's iterates).
SHARE_FLOOR = 1e-12


class IpoptUnavailableError(UserError):
    """No ``ipopt`` executable could be found."""


def find_ipopt() -> str | None:
    """Path of an ``ipopt`` executable, or ``None``.

    Looks at ``$IPOPT_EXECUTABLE``, then ``PATH``, then ``sys.prefix/bin`` (the venv,
    where ``.ci/build_ipopt.sh`` puts it).
    """
    explicit = os.environ.get(IPOPT_ENV)
    if explicit and os.path.isfile(explicit) and os.access(explicit, os.X_OK):
        return explicit
    on_path = shutil.which("ipopt")
    if on_path:
        return on_path
    for folder in (os.path.join(sys.prefix, "bin"), os.path.dirname(sys.executable)):
        candidate = os.path.join(folder, "ipopt")
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def ipopt_unavailable_reason() -> str | None:
    """``None`` when the reference solver can run, else a sentence saying why not."""
    try:
        import pyomo.environ  # noqa: F401
    except ImportError:
        return "pyomo is not installed (pip install 'aigc-incentive[reference]')"
    if find_ipopt() is None:
        return ("no ipopt executable on PATH, in sys.prefix/bin or in $IPOPT_EXECUTABLE; "
                "build it with `sudo bash .ci/build_ipopt.sh .venv/bin` (Debian)")
    return None


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class PyomoReferenceConfig:
    """Settings of the Pyomo reference solver (saved with every result)."""

    method: str = "auto"
    """``"gauss-seidel"`` (leader MPECs in turn), ``"joint"`` (all leaders' stationarity
    and all followers' KKT at once) or ``"auto"`` (joint for ASPs with at most
    ``joint_max_mus`` MUs, then Gauss-Seidel rounds from its answer to polish it -- the
    joint system's leader sensitivities are one-sided at a capacity kink -- and plain
    Gauss-Seidel for larger ASPs or when the joint solve fails)."""
    tolerance: float = 1e-6
    """Gauss-Seidel stops when no scaled reward ``r / theta`` moved more than this in a round."""
    max_rounds: int = 200
    """Gauss-Seidel round limit per ASP."""
    ladder: tuple[float, ...] = DEFAULT_LADDER
    """Scholtes relaxation bounds ``eps`` for a cold solve (decreasing)."""
    warm_ladder: tuple[float, ...] = WARM_LADDER
    """Relaxation bounds once warm-started from the previous round."""
    ipopt_tol: float = 1e-11
    """Ipopt's ``tol`` (scaled NLP error)."""
    ipopt_max_iter: int = 3000
    """Ipopt's ``max_iter`` per relaxed solve."""
    joint_max_mus: int = 25
    """Largest number of MUs at one ASP for which ``"auto"`` uses the joint system
    (it has ``O(n^2)`` sensitivity variables)."""
    executable: str | None = None
    """Explicit ipopt path; ``None`` searches (see :func:`find_ipopt`)."""


# ----------------------------------------------------------------------------- data
@dataclass
class _ASPData:
    """Scaled data of one ASP and the MUs it serves (see the module docstring)."""

    asp: int
    mus: np.ndarray                 # global MU indices
    theta: np.ndarray               # money per QoE
    rho_lo: np.ndarray
    rho_hi: np.ndarray
    qoe_ceiling: np.ndarray         # QoE with infinite resources
    qoe_required: np.ndarray        # NaN where none
    compute_active: np.ndarray      # bool: x^f > 0
    bandwidth_active: np.ndarray    # bool: x^b > 0
    compute_loss: np.ndarray        # a^f = x^f / F (QoE at the whole capacity)
    compute_weight: np.ndarray      # g^f = theta x^f / W^f
    compute_kappa_linear: float     # k^f F^2 / W^f
    compute_kappa_quadratic: float  # 2 k^f F^3 / W^f
    bandwidth_loss: np.ndarray      # linear: a^b = x^b / B; shannon: w^T D / (T B)
    bandwidth_weight: np.ndarray    # linear: theta x^b / W^b; shannon: theta w^T D / (T W^b)
    bandwidth_kappa: float          # k^b B^2 / W^b
    snr_share: np.ndarray           # shannon: snr_hz / B
    shannon: bool
    compute_capacity: float
    bandwidth_capacity: float
    compute_cost: float
    bandwidth_cost: float
    quadratic: bool


def _asp_data(market, asp: int) -> _ASPData:
    mus = market.mus_of(asp)
    theta = market.value_per_qoe[mus]
    xf = market.timeliness_compute_need[mus]
    xb = market.timeliness_bandwidth_need[mus]
    F = float(market.compute_capacity[asp])
    B = float(market.bandwidth_capacity[asp])
    kf = float(market.compute_cost[asp])
    kb = float(market.bandwidth_cost[asp])
    Wf = float(np.sum(theta * xf)) or 1.0
    shannon = market.bandwidth_model == "shannon"
    quadratic = market.asp_cost == "quadratic"
    raw_b = market.weight_timeliness[mus] * market.payload_bits[mus] / market.deadline_s[mus]
    Wb = float(np.sum(theta * (raw_b if shannon else xb))) or 1.0
    return _ASPData(
        asp=asp, mus=mus, theta=theta,
        rho_lo=market.reward_min[mus] / theta, rho_hi=market.reward_max[mus] / theta,
        qoe_ceiling=market.qoe_ceiling[mus], qoe_required=market.qoe_required[mus],
        compute_active=xf > 0, bandwidth_active=xb > 0,
        compute_loss=xf / F, compute_weight=theta * xf / Wf,
        compute_kappa_linear=0.0 if quadratic else kf * F * F / Wf,
        compute_kappa_quadratic=2.0 * kf * F ** 3 / Wf if quadratic else 0.0,
        bandwidth_loss=raw_b / B if shannon else xb / B,
        bandwidth_weight=theta * raw_b / Wb if shannon else theta * xb / Wb,
        bandwidth_kappa=kb * B * B / Wb,
        snr_share=market.snr_hz[mus] / B, shannon=shannon,
        compute_capacity=F, bandwidth_capacity=B, compute_cost=kf, bandwidth_cost=kb,
        quadratic=quadratic,
    )


# ----------------------------------------------------------------------------- model
def build_asp_model(data: _ASPData, rho_start: np.ndarray):
    """Pyomo model of one ASP: its MUs' rewards, the ASP's KKT conditions, the MUs' QoE.

    Components: ``rho[j]`` scaled rewards (boxed); ``phi[j]``, ``beta[j]`` resource
    shares of the active MUs; ``p_compute``, ``p_bandwidth`` scaled capacity multipliers;
    ``stationarity_compute[j]``, ``stationarity_bandwidth[j]`` (equalities);
    ``capacity_compute``, ``capacity_bandwidth`` (``complements``); ``qoe[j]``
    (expressions); ``utility[j]`` = ``(1 - rho_j) qoe_j``, the leader's utility over
    ``theta_j``.
    """
    import pyomo.environ as pyo
    from pyomo.mpec import Complementarity, complements

    n = len(data.mus)
    model = pyo.ConcreteModel(name=f"asp{data.asp}")
    model.J = pyo.RangeSet(0, n - 1)
    model.JF = pyo.Set(initialize=[j for j in range(n) if data.compute_active[j]])
    model.JB = pyo.Set(initialize=[j for j in range(n) if data.bandwidth_active[j]])
    model.rho = pyo.Var(model.J, bounds=lambda m, j: (data.rho_lo[j], data.rho_hi[j]),
                        initialize=lambda m, j: float(rho_start[j]))
    nf, nb = max(len(model.JF), 1), max(len(model.JB), 1)
    model.phi = pyo.Var(model.JF, bounds=(SHARE_FLOOR, 1.0), initialize=1.0 / nf)
    model.beta = pyo.Var(model.JB, bounds=(SHARE_FLOOR, 1.0), initialize=1.0 / nb)
    model.p_compute = pyo.Var(within=pyo.NonNegativeReals, initialize=1.0)
    model.p_bandwidth = pyo.Var(within=pyo.NonNegativeReals, initialize=1.0)

    def stationarity_compute(m, j):
        # theta rho x^f = (k + mu) f^2   (linear)   or   (2 k f + mu) f^2   (quadratic), scaled
        price = data.compute_kappa_linear + data.compute_kappa_quadratic * m.phi[j] + m.p_compute
        return m.rho[j] * data.compute_weight[j] == price * m.phi[j] ** 2

    def stationarity_bandwidth(m, j):
        price = data.bandwidth_kappa + m.p_bandwidth
        if not data.shannon:
            return m.rho[j] * data.bandwidth_weight[j] == price * m.beta[j] ** 2
        sigma = data.snr_share[j]
        u = pyo.log(1.0 + sigma / m.beta[j]) / math.log(2.0)
        marginal = u - sigma / (math.log(2.0) * (m.beta[j] + sigma))
        return m.rho[j] * data.bandwidth_weight[j] * marginal == price * m.beta[j] ** 2 * u ** 2

    model.stationarity_compute = pyo.Constraint(model.JF, rule=stationarity_compute)
    model.stationarity_bandwidth = pyo.Constraint(model.JB, rule=stationarity_bandwidth)
    if len(model.JF):
        model.capacity_compute = Complementarity(
            expr=complements(model.p_compute >= 0, 1.0 - sum(model.phi[j] for j in model.JF) >= 0))
    else:
        model.p_compute.fix(0.0)
    if len(model.JB):
        model.capacity_bandwidth = Complementarity(
            expr=complements(model.p_bandwidth >= 0, 1.0 - sum(model.beta[j] for j in model.JB) >= 0))
    else:
        model.p_bandwidth.fix(0.0)

    def qoe(m, j):
        loss = 0.0
        if data.compute_active[j]:
            loss = loss + data.compute_loss[j] / m.phi[j]
        if data.bandwidth_active[j]:
            if data.shannon:
                u = pyo.log(1.0 + data.snr_share[j] / m.beta[j]) / math.log(2.0)
                loss = loss + data.bandwidth_loss[j] / (m.beta[j] * u)
            else:
                loss = loss + data.bandwidth_loss[j] / m.beta[j]
        return data.qoe_ceiling[j] - loss

    model.qoe = pyo.Expression(model.J, rule=qoe)
    model.utility = pyo.Expression(model.J, rule=lambda m, j: (1.0 - m.rho[j]) * m.qoe[j])
    return model


def _initial_followers(model, data: _ASPData) -> None:
    """Start shares proportional to sqrt(weight * rho) (a feasible, interior point)."""
    for comp, var, weight in (("JF", model.phi, data.compute_weight), ("JB", model.beta, data.bandwidth_weight)):
        idx = list(getattr(model, comp))
        if not idx:
            continue
        s = np.array([math.sqrt(max(weight[j] * model.rho[j].value, 1e-300)) for j in idx])
        s = s / s.sum() * 0.999
        for j, v in zip(idx, s):
            var[j].set_value(max(float(v), 10 * SHARE_FLOOR))


class _Ipopt:
    """An Ipopt handle with the options of the config and a Scholtes ladder runner."""

    def __init__(self, config: PyomoReferenceConfig):
        import pyomo.environ as pyo

        exe = config.executable or find_ipopt()
        if exe is None:
            raise IpoptUnavailableError(ipopt_unavailable_reason() or "ipopt not found")
        self.solver = pyo.SolverFactory("ipopt", executable=exe)
        self.solver.options["tol"] = config.ipopt_tol
        self.solver.options["max_iter"] = config.ipopt_max_iter
        self.solver.options["print_level"] = 0
        self.solver.options["mu_strategy"] = "adaptive"
        self.solves = 0
        self.seconds = 0.0

    def ladder(self, model, ladder) -> bool:
        """Solve the relaxed model for each ``eps`` in ``ladder``; True if the last is optimal."""
        from pyomo.common.errors import ApplicationError
        from pyomo.opt import SolverStatus, TerminationCondition

        ok = False
        for eps in ladder:
            model.mpec_bound.set_value(eps)
            t0 = time.perf_counter()
            try:
                result = self.solver.solve(model, load_solutions=False, tee=bool(os.environ.get("PYOMO_REF_TEE")))
            except (ApplicationError, ValueError) as exc:  # ipopt crashed or returned no solution file
                self.seconds += time.perf_counter() - t0
                self.solves += 1
                if os.environ.get("PYOMO_REF_DEBUG"):
                    print("ipopt", eps, "failed:", exc, file=sys.stderr)
                return False
            self.seconds += time.perf_counter() - t0
            self.solves += 1
            cond = result.solver.termination_condition
            if os.environ.get("PYOMO_REF_DEBUG"):
                print("ipopt", eps, cond, file=sys.stderr)
            ok = (result.solver.status == SolverStatus.ok and cond in (
                TerminationCondition.optimal, TerminationCondition.locallyOptimal))
            if cond in (TerminationCondition.optimal, TerminationCondition.locallyOptimal,
                        TerminationCondition.maxIterations):
                model.solutions.load_from(result)
            if not ok and cond == TerminationCondition.infeasible:
                return False
        return ok


def _relax(model) -> None:
    """Apply Scholtes' relaxation (Pyomo's ``mpec.simple_nonlinear``) in place."""
    import pyomo.environ as pyo

    pyo.TransformationFactory("mpec.simple_nonlinear").apply_to(model)


# ----------------------------------------------------------------------------- Gauss-Seidel
def _gauss_seidel(data: _ASPData, rho_start, config, ipopt: _Ipopt, trajectory: list, warm: bool = False):
    """Leaders of one ASP in turn, each solving its MPEC; returns (rho, rounds, converged, model).

    The returned model holds the followers' KKT point at the final rewards (a last
    follower-only solve with every reward fixed).
    """
    import pyomo.environ as pyo

    n = len(data.mus)
    model = build_asp_model(data, rho_start)
    _initial_followers(model, data)
    model.leader_objective = pyo.Objective(pyo.RangeSet(0, n - 1), rule=lambda m, j: m.utility[j],
                                           sense=pyo.maximize)
    floors = [j for j in range(n) if np.isfinite(data.qoe_required[j])]
    model.qoe_floor = pyo.Constraint(floors, rule=lambda m, j: m.qoe[j] >= float(data.qoe_required[j]))
    model.qoe_floor.deactivate()
    model.follower_only = pyo.Objective(expr=0.0)
    _relax(model)
    model.follower_only.deactivate()
    for j in range(n):
        model.leader_objective[j].deactivate()
    rho = np.array(rho_start, dtype=float)
    warm = np.full(n, bool(warm))
    converged = False
    rounds = 0
    for rounds in range(1, config.max_rounds + 1):
        before = rho.copy()
        for j in range(n):
            for k in range(n):
                model.rho[k].fix(float(rho[k]))
            if data.rho_lo[j] < data.rho_hi[j]:
                model.rho[j].unfix()
            model.leader_objective[j].activate()
            if j in floors:
                model.qoe_floor[j].activate()
            ok = ipopt.ladder(model, config.warm_ladder if warm[j] else config.ladder)
            if not ok and warm[j]:
                ok = ipopt.ladder(model, config.ladder)
            model.leader_objective[j].deactivate()
            if j in floors:
                model.qoe_floor[j].deactivate()
            if not ok:
                if j in floors:
                    raise InfeasibleError(
                        f"MU {int(data.mus[j])}: Ipopt found no reward that meets qoe_required "
                        f"{data.qoe_required[j]:g} given the other MUs' rewards")
                continue
            rho[j] = float(np.clip(model.rho[j].value, data.rho_lo[j], data.rho_hi[j]))
            warm[j] = True
        trajectory.append((data.asp, rounds, rho.copy()))
        if np.max(np.abs(rho - before)) <= config.tolerance:
            converged = True
            break
    for k in range(n):
        model.rho[k].fix(float(rho[k]))
    model.follower_only.activate()
    converged &= ipopt.ladder(model, config.warm_ladder)
    return rho, rounds, converged, model


# ----------------------------------------------------------------------------- joint system
def _joint(data: _ASPData, rho_start, config, ipopt: _Ipopt):
    """All leaders' stationarity and the ASP's KKT conditions of one ASP at once.

    Leader j's first-order condition over its box is
    ``complements(rho_lo <= rho_j <= rho_hi, -dU_j/drho_j)`` (plus a multiplier for a QoE
    floor), where ``dU_j/drho_j = -qoe_j + (1 - rho_j) dqoe_j/drho_j`` and the response
    of the follower, ``d(phi, beta, p)/drho_j``, solves the linearised follower KKT
    system: the symbolic derivative of every stationarity equation, and for each capacity
    the derivative of ``p * unused = 0``, ``dp * unused - p * d(sum of shares) = 0``, which
    keeps ``dp = 0`` while capacity is slack and ``d(sum of shares) = 0`` while it binds
    (undetermined only where both are zero, a degenerate point).
    """
    import pyomo.environ as pyo

    n = len(data.mus)
    model = build_asp_model(data, rho_start)
    _initial_followers(model, data)
    for j in range(n):
        model.rho[j].fix(float(rho_start[j]))
    model.objective = pyo.Objective(expr=0.0)
    _add_follower_sensitivities(model, n)
    floors, movable = _add_leader_conditions(model, data)
    _relax(model)  # every complementarity -> Scholtes-relaxed constraints (blocks)
    sensitivity_blocks = [getattr(model, name) for name in ("sens_compute", "sens_bandwidth", "branch_compute",
                                                            "branch_bandwidth") if hasattr(model, name)]
    # Phase 1: the follower alone at the starting rewards (a square system), for a good start.
    for block in [model.leader_stationarity, model.floor, *sensitivity_blocks]:
        block.deactivate()
    model.floor_multiplier.fix(0.0)
    if not ipopt.ladder(model, config.ladder):
        return np.array(rho_start, dtype=float), False, model
    # Phase 2: the whole system.
    for block in [model.leader_stationarity, model.floor, *sensitivity_blocks]:
        block.activate()
    for j in floors:
        model.floor_multiplier[j].unfix()
    for j in movable:
        model.rho[j].unfix()
    ok = ipopt.ladder(model, config.ladder)
    rho = np.array([float(np.clip(model.rho[j].value, data.rho_lo[j], data.rho_hi[j])) for j in range(n)])
    return rho, ok, model


def _add_follower_sensitivities(model, n: int) -> None:
    """The linearised follower KKT system: ``d(phi, beta, p)/drho_j`` for every leader j.

    For each resource: the symbolic derivative of every stationarity equation, and the branch
    condition ``dp * unused - p * d(sum of shares) = 0`` (``dp`` fixed at 0 for a resource no MU
    uses).
    """
    import pyomo.environ as pyo
    from pyomo.core.expr.calculus.derivatives import Modes, differentiate

    def sens(con, var_of_i, d_var, d_p, p_var, i, j):
        body = con.body if con.upper is None else con.body - con.upper
        d_rho = differentiate(body, wrt=model.rho[i], mode=Modes.reverse_symbolic)
        d_share = differentiate(body, wrt=var_of_i, mode=Modes.reverse_symbolic)
        d_price = differentiate(body, wrt=p_var, mode=Modes.reverse_symbolic)
        return (d_rho if i == j else 0.0) + d_share * d_var[i, j] + d_price * d_p[j] == 0

    resources = (("compute", "phi", list(model.JF)), ("bandwidth", "beta", list(model.JB)))
    # declared in the order the NL file has always had: derivative variables, then the
    # linearised stationarity, then the branch conditions
    for resource, share, users in resources:
        model.add_component(f"d_{share}", pyo.Var([(i, j) for i in users for j in range(n)], initialize=0.0))
    for resource, share, users in resources:
        model.add_component(f"d_p_{resource}", pyo.Var(model.J, initialize=0.0))
    for resource, share, users in resources:
        model.add_component(f"sens_{resource}", pyo.Constraint(
            [(i, j) for i in users for j in range(n)],
            rule=lambda m, i, j, resource=resource, share=share: sens(
                getattr(m, f"stationarity_{resource}")[i], getattr(m, share)[i], getattr(m, f"d_{share}"),
                getattr(m, f"d_p_{resource}"), getattr(m, f"p_{resource}"), i, j)))
    for resource, share, users in resources:
        shares, d_share = getattr(model, share), getattr(model, f"d_{share}")
        d_price, price = getattr(model, f"d_p_{resource}"), getattr(model, f"p_{resource}")
        if not users:
            d_price.fix(0.0)
            continue
        branch = pyo.ConstraintList()
        model.add_component(f"branch_{resource}", branch)
        for j in range(n):
            branch.add(d_price[j] * (1.0 - sum(shares[i] for i in users))
                       - price * sum(d_share[i, j] for i in users) == 0)


def _add_leader_conditions(model, data: _ASPData) -> tuple[list[int], list[int]]:
    """Each leader's first-order condition over its box (and QoE-floor complementarity).

    Returns the MUs with a QoE floor and the MUs whose reward box is not a point.
    """
    import pyomo.environ as pyo
    from pyomo.core.expr.calculus.derivatives import Modes, differentiate
    from pyomo.mpec import Complementarity, complements

    n = len(data.mus)

    def d_qoe(m, j):
        total = 0.0
        if data.compute_active[j]:
            total = total + differentiate(m.qoe[j].expr, wrt=m.phi[j], mode=Modes.reverse_symbolic) * m.d_phi[j, j]
        if data.bandwidth_active[j]:
            total = total + differentiate(m.qoe[j].expr, wrt=m.beta[j], mode=Modes.reverse_symbolic) * m.d_beta[j, j]
        return total

    model.d_qoe = pyo.Expression(model.J, rule=d_qoe)
    floors = [j for j in range(n) if np.isfinite(data.qoe_required[j])]
    model.floor_multiplier = pyo.Var(floors, within=pyo.NonNegativeReals, initialize=0.0)
    model.floor = Complementarity(floors, rule=lambda m, j: complements(
        m.floor_multiplier[j] >= 0, m.qoe[j] - float(data.qoe_required[j]) >= 0))

    def leader(m, j):
        gradient = -m.qoe[j] + (1.0 - m.rho[j]) * m.d_qoe[j]
        if j in floors:
            gradient = gradient + m.floor_multiplier[j] * m.d_qoe[j]
        return complements(pyo.inequality(float(data.rho_lo[j]), m.rho[j], float(data.rho_hi[j])), -gradient)

    movable = [j for j in range(n) if data.rho_lo[j] < data.rho_hi[j]]
    model.leader_stationarity = Complementarity(movable, rule=leader)
    return floors, movable


# ----------------------------------------------------------------------------- entry point
@dataclass
class ReferenceRun:
    """What the Pyomo solve did, besides the rewards (kept in the result's ``extra``)."""

    rewards: np.ndarray
    """(M,) equilibrium rewards, money per QoE."""
    methods: dict[str, str] = field(default_factory=dict)
    """ASP name -> method that produced its MUs' rewards."""
    rounds: int = 0
    """Largest number of Gauss-Seidel rounds over the ASPs (0 when all were joint)."""
    converged: bool = True
    """Every ASP's Gauss-Seidel loop or joint solve ended successfully."""
    ipopt_solves: int = 0
    """Number of Ipopt runs (every rung of every ladder)."""
    ipopt_seconds: float = 0.0
    """Wall time inside Ipopt calls including Pyomo's NL writing, s."""
    trajectory: list = field(default_factory=list)
    """``(round, rewards (M,))`` after every Gauss-Seidel round (the joint solve adds its answer)."""
    compute: np.ndarray | None = None
    """(M,) the followers' compute f = F phi from the Pyomo KKT point (compute units)."""
    bandwidth: np.ndarray | None = None
    """(M,) bandwidth b = B beta (Hz)."""
    compute_multiplier: np.ndarray | None = None
    """(N,) compute capacity multiplier mu^f = p W^f / F^2 (money per compute unit)."""
    bandwidth_multiplier: np.ndarray | None = None
    """(N,) bandwidth capacity multiplier mu^b (money per Hz)."""


def _store_allocation(run: ReferenceRun, market, data: _ASPData, model) -> None:
    """Copy one ASP's KKT point (shares and scaled multipliers) into physical units."""
    M, N = market.n_mus, market.n_asps
    for name in ("compute", "bandwidth"):
        if getattr(run, name) is None:
            setattr(run, name, np.zeros(M))
            setattr(run, f"{name}_multiplier", np.zeros(N))
    theta = data.theta
    xf = data.compute_loss * data.compute_capacity          # x^f
    Wf = float(np.sum(theta * xf)) or 1.0
    for j in model.JF:
        run.compute[data.mus[j]] = data.compute_capacity * float(model.phi[j].value)
    for j in model.JB:
        run.bandwidth[data.mus[j]] = data.bandwidth_capacity * float(model.beta[j].value)
    Wb = float(np.sum(theta * data.bandwidth_loss * data.bandwidth_capacity)) or 1.0
    run.compute_multiplier[data.asp] = max(float(model.p_compute.value or 0.0), 0.0) * Wf / data.compute_capacity ** 2
    run.bandwidth_multiplier[data.asp] = max(float(model.p_bandwidth.value or 0.0), 0.0) * Wb / data.bandwidth_capacity ** 2


def reference_rewards(market, *, config: PyomoReferenceConfig | None = None,
                      initial_rewards: np.ndarray | None = None) -> ReferenceRun:
    """Equilibrium rewards of ``market`` by the Pyomo/Ipopt reference formulation.

    Parameters
    ----------
    market : market.Market
        The market (any bandwidth model and ASP cost).
    config : PyomoReferenceConfig, optional
        Method, tolerances and Ipopt settings.
    initial_rewards : array (M,), optional
        Starting rewards (money per QoE); default: the middle of each box.

    Returns
    -------
    ReferenceRun
    """
    config = config or PyomoReferenceConfig()
    if config.method not in ("auto", "joint", "gauss-seidel"):
        raise UserError(f"pyomo reference: unknown method {config.method!r} (auto, joint, gauss-seidel)")
    ipopt = _Ipopt(config)
    if initial_rewards is None:
        start = 0.5 * (market.reward_min + market.reward_max)
    else:
        start = np.asarray(initial_rewards, dtype=float)
        if start.shape != (market.n_mus,) or not np.all(np.isfinite(start)):
            raise ValueError(f"initial_rewards must be {market.n_mus} finite numbers")
        start = market.clip_rewards(start)
    rewards = start.copy()
    run = ReferenceRun(rewards=rewards)
    per_asp_traj: dict[int, list] = {}
    for asp in range(market.n_asps):
        data = _asp_data(market, asp)
        if len(data.mus) == 0:
            continue
        rho0 = rewards[data.mus] / data.theta
        method = config.method
        if method == "auto":
            method = "joint" if len(data.mus) <= config.joint_max_mus else "gauss-seidel"
        rho, ok, ok_joint = None, False, False
        if method == "joint":
            rho, ok, model = _joint(data, rho0, config, ipopt)
            ok_joint = ok
            run.methods[market.asp_names[asp]] = "joint"
            per_asp_traj[asp] = [(0, rho0.copy()), (1, rho.copy())]
            if config.method == "auto":
                # Polish (or, if the joint solve failed, solve) with Gauss-Seidel leader MPECs:
                # the joint system's leader sensitivities are one-sided at a capacity kink, and
                # a Gauss-Seidel round from an equilibrium leaves it in one round.
                method = "gauss-seidel"
        if method == "gauss-seidel":
            traj: list = []
            rho, rounds, ok, model = _gauss_seidel(data, rho0 if rho is None or not ok_joint else rho, config,
                                                   ipopt, traj, warm=ok_joint)
            run.methods[market.asp_names[asp]] = "gauss-seidel" if config.method != "auto" or len(
                data.mus) > config.joint_max_mus else ("joint+gauss-seidel" if ok_joint else "gauss-seidel (joint failed)")
            run.rounds = max(run.rounds, rounds)
            per_asp_traj[asp] = [(0, rho0.copy())] + [(r, x) for _, r, x in traj]
        run.converged &= bool(ok)
        rewards[data.mus] = rho * data.theta
        _store_allocation(run, market, data, model)
    # Reward trajectory over rounds (an ASP that stopped early keeps its last value).
    horizon = max((len(t) for t in per_asp_traj.values()), default=1)
    for k in range(horizon):
        snapshot = start.copy()
        for asp, traj in per_asp_traj.items():
            mus = market.mus_of(asp)
            snapshot[mus] = traj[min(k, len(traj) - 1)][1] * market.value_per_qoe[mus]
        run.trajectory.append((k, snapshot))
    run.rewards = market.clip_rewards(rewards)
    run.ipopt_solves = ipopt.solves
    run.ipopt_seconds = ipopt.seconds
    return run


def config_dict(config: PyomoReferenceConfig) -> dict:
    """The config as a JSON-ready dict."""
    out = asdict(config)
    out["ladder"] = list(config.ladder)
    out["warm_ladder"] = list(config.warm_ladder)
    return out


def _response(market, run: ReferenceRun):
    """The followers' response as Pyomo found it, in the market's result type."""
    from market.followers import FollowerResponse
    from market.qoe import qoe_parts

    compute = run.compute if run.compute is not None else np.zeros(market.n_mus)
    bandwidth = run.bandwidth if run.bandwidth is not None else np.zeros(market.n_mus)
    mult_f = run.compute_multiplier if run.compute_multiplier is not None else np.zeros(market.n_asps)
    mult_b = run.bandwidth_multiplier if run.bandwidth_multiplier is not None else np.zeros(market.n_asps)
    compute_price = mult_f if market.asp_cost == "quadratic" else market.compute_cost + mult_f
    return FollowerResponse(rewards=run.rewards, compute=compute, bandwidth=bandwidth,
                            compute_price=compute_price, bandwidth_price=market.bandwidth_cost + mult_b,
                            compute_multiplier=mult_f, bandwidth_multiplier=mult_b,
                            qoe=qoe_parts(market, compute, bandwidth), method="pyomo")


def solve(market, *, tolerance: float = 1e-6, max_iterations: int = 200, initial_rewards=None,
          method: str = "auto", joint_max_mus: int = 25, ipopt_tol: float = 1e-11,
          executable: str | None = None, **options):
    """Registry entry ``"pyomo"``: the reference EPEC solve, as an ``EquilibriumResult``.

    Parameters
    ----------
    market : market.Market
    tolerance : float
        Gauss-Seidel stops when no scaled reward ``r / theta`` moves more than
        ``tolerance / 10`` in a round (the certificate judges the answer at ``tolerance``).
    max_iterations : int
        Gauss-Seidel round limit per ASP (capped at 200).
    initial_rewards : array (M,), optional
        Warm start (money per QoE).
    method : ``"auto"``, ``"joint"`` or ``"gauss-seidel"`` (see :class:`PyomoReferenceConfig`).
    joint_max_mus, ipopt_tol, executable : see :class:`PyomoReferenceConfig`.

    Returns
    -------
    solvers.result.EquilibriumResult
        The response (allocations, multipliers) is Pyomo's own KKT point, so the
        certificate's KKT residuals judge this formulation, not the closed form.
        ``options["trajectory"]`` holds the rewards after every round.

    Raises
    ------
    IpoptUnavailableError
        When no ipopt executable is found (the message says how to build one).
    """
    from solvers.result import make_result

    if options:
        raise TypeError(f"unknown option(s) for the pyomo reference: {', '.join(sorted(options))}")
    config = PyomoReferenceConfig(method=method, tolerance=tolerance / 10.0,
                                  max_rounds=int(max(1, min(max_iterations, 200))),
                                  joint_max_mus=joint_max_mus, ipopt_tol=ipopt_tol, executable=executable)
    start = time.perf_counter()
    run = reference_rewards(market, config=config, initial_rewards=initial_rewards)
    elapsed = time.perf_counter() - start
    history = []
    for (_, before), (_, after) in zip(run.trajectory, run.trajectory[1:]):
        history.append(float(np.max(np.abs(after - before) / market.value_per_qoe, initial=0.0)))
    opts = config_dict(config)
    opts["methods"] = run.methods
    opts["ipopt_solves"] = run.ipopt_solves
    opts["ipopt_seconds"] = run.ipopt_seconds
    opts["trajectory"] = [r.tolist() for _, r in run.trajectory]
    return make_result(market, run.rewards, solver="pyomo", iterations=max(run.rounds, 1), solve_time_s=elapsed,
                       solver_status="converged" if run.converged else "not_certified",
                       message="per ASP: " + ", ".join(f"{k}={v}" for k, v in run.methods.items()),
                       follower_solves=run.ipopt_solves, options=opts, history=history,
                       response=_response(market, run))
