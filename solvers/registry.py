"""Solvers by name, cvxpy-style: what each handles, lazy imports, one entry point.

What this module is for: :data:`REGISTRY` maps a solver name to a :class:`SolverSpec`
(module path, function name, supported model variants, description). Modules are imported
only when their solver is used. :func:`solve` turns a scenario (or path, or market) into a
:class:`solvers.result.EquilibriumResult`, always attaches the certificate, and reports
``"converged"`` only when the certificate passes.

Every solver function has the signature::

    solve(market, *, tolerance=1e-6, max_iterations=..., initial_rewards=None, **options)
        -> EquilibriumResult

May import: ``market`` and, lazily, the solver modules of this package.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.errors import InfeasibleError, UserError
from market.model import Market
from market.scenario import Scenario, load_scenario

ALL_VARIANTS = {"bandwidth_model": {"linear", "shannon"}, "asp_cost": {"linear", "quadratic"}}
CLOSED_FORM_ONLY = {"bandwidth_model": {"linear"}, "asp_cost": {"linear"}}


@dataclass(frozen=True)
class SolverSpec:
    """One registry entry."""

    name: str
    """Registry name (``--solver`` on the command line)."""
    module: str
    """Dotted module path, imported lazily."""
    function: str
    """Name of the solve function in that module."""
    variants: dict = field(default_factory=lambda: {k: set(v) for k, v in ALL_VARIANTS.items()})
    """Model variants handled, e.g. ``{"bandwidth_model": {"linear"}, "asp_cost": {"linear"}}``."""
    description: str = ""
    """One line for ``--help`` and docs."""
    defaults: dict = field(default_factory=dict)
    """Options always passed to the function (e.g. the Jacobi/Gauss-Seidel schedule)."""

    def supports(self, market: Market) -> bool:
        """Whether the solver handles the market's model variants."""
        return (market.bandwidth_model in self.variants.get("bandwidth_model", set())
                and market.asp_cost in self.variants.get("asp_cost", set()))

    def load(self):
        """Import the module and return the solve function (raises UserError if absent)."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == self.module or self.module.startswith(exc.name + ".")):
                raise UserError(f"solver {self.name!r} is not available in this build "
                                f"(module {self.module} is missing)") from None
            raise UserError(f"solver {self.name!r} needs the package {exc.name!r}, which is not installed") from None
        try:
            return getattr(module, self.function)
        except AttributeError:
            raise UserError(f"solver {self.name!r}: {self.module} has no function {self.function!r}") from None


REGISTRY: dict[str, SolverSpec] = {}


def register(spec: SolverSpec) -> SolverSpec:
    """Add (or replace) a registry entry."""
    REGISTRY[spec.name] = spec
    return spec


register(SolverSpec("dual-perturbation", "solvers.dual_perturbation", "solve",
                    description="two-sided reward perturbation per MU, safeguarded Newton ascent; "
                                "Jacobi, switching to Gauss-Seidel if Jacobi stalls",
                    defaults={"schedule": "auto"}))
register(SolverSpec("dual-perturbation-jacobi", "solvers.dual_perturbation", "solve",
                    description="dual perturbation, pure Jacobi schedule (all MUs move at once)",
                    defaults={"schedule": "jacobi"}))
register(SolverSpec("dual-perturbation-gs", "solvers.dual_perturbation", "solve",
                    description="dual perturbation, Gauss-Seidel schedule (MUs move in turn)",
                    defaults={"schedule": "gauss-seidel"}))
register(SolverSpec("simultaneous-perturbation", "solvers.simultaneous_perturbation", "solve",
                    description="SPSA: all MUs perturb at once with random signs, two follower solves per round"))
register(SolverSpec("implicit-gradient", "solvers.implicit_gradient", "solve",
                    variants={k: set(v) for k, v in CLOSED_FORM_ONLY.items()},
                    description="exact gradient through the follower KKT system (implicit function theorem); test oracle"))
register(SolverSpec("pyomo", "solvers.pyomo_reference", "solve",
                    description="Pyomo reference formulation (needs an NLP solver such as Ipopt)"))


def available_solvers() -> list[str]:
    """Registered solver names."""
    return sorted(REGISTRY)


def as_market(source: Scenario | Market | str | Path) -> Market:
    """A :class:`Market` from a scenario, a market, or a scenario file path."""
    if isinstance(source, Market):
        return source
    if isinstance(source, (str, Path)):
        source = load_scenario(source)
    if isinstance(source, Scenario):
        return Market.from_scenario(source)
    raise TypeError(f"cannot make a market from {type(source).__name__}")


def solve(source: Scenario | Market | str | Path, solver: str = "dual-perturbation", *,
          tolerance: float | None = None, max_iterations: int | None = None, initial_rewards=None,
          certificate_options: dict | None = None, **options: Any):
    """Solve and certify a market.

    Parameters
    ----------
    source : Scenario, Market or path to a scenario file.
    solver : registry name (see :func:`available_solvers`).
    tolerance : certificate tolerance (relative); default from the scenario (1e-6).
    max_iterations : iteration limit; default from the scenario.
    initial_rewards : (M,) warm start, optional.
    certificate_options : passed to :func:`solvers.certificate.certify` (grid_points, polish_iterations).
    **options : solver-specific options.

    Returns
    -------
    EquilibriumResult
        ``status`` is ``"converged"`` only when the certificate passes.
    """
    from solvers.certificate import certify

    market = as_market(source)
    spec = REGISTRY.get(solver)
    if spec is None:
        raise UserError(f"unknown solver {solver!r}; available: {', '.join(available_solvers())}")
    if not spec.supports(market):
        raise UserError(f"solver {solver!r} does not handle bandwidth_model={market.bandwidth_model!r}, "
                        f"asp_cost={market.asp_cost!r}; it supports {spec.variants}")
    function = spec.load()
    tol = float(market.tolerance if tolerance is None else tolerance)
    iters = int(market.max_iterations if max_iterations is None else max_iterations)
    kwargs = {**spec.defaults, **options}
    try:
        result = function(market, tolerance=tol, max_iterations=iters, initial_rewards=initial_rewards, **kwargs)
    except InfeasibleError as exc:  # a solver that raises instead of labelling (the Pyomo reference)
        from solvers.result import make_result

        start = market.reward_max if initial_rewards is None else initial_rewards
        result = make_result(market, start, solver=spec.name, iterations=0, solve_time_s=0.0,
                             solver_status="infeasible", message=str(exc))
    result.solver = spec.name
    return finalize(result, tol, certificate_options or {}, certify)


def finalize(result, tolerance: float, certificate_options: dict, certify=None):
    """Attach the certificate and set the final status from it (idempotent)."""
    if certify is None:
        from solvers.certificate import certify
    if result.response is None or result.solver_status == "error":
        result.status = result.solver_status if result.solver_status in ("error", "infeasible") else "error"
        return result
    start = time.perf_counter()
    result.certificate = certify(result.market, result.rewards, tolerance, response=result.response,
                                 **certificate_options)
    result.certificate_time_s = time.perf_counter() - start
    if result.solver_status in ("error", "infeasible") and not result.certificate.passed:
        result.status = result.solver_status
    elif result.certificate.passed:
        result.status = "converged"
    elif result.certificate.floor_violation > tolerance:
        result.status = "infeasible"
    elif result.solver_status == "max_iterations":
        result.status = "max_iterations"
    else:
        result.status = "not_certified"
    return result
