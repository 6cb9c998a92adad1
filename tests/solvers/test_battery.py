"""One battery over every registered solver, as scipy tests every ``minimize`` method.

Each entry of :data:`solvers.registry.REGISTRY` must return the same :class:`EquilibriumResult`
(fields, canonical status vocabulary, an attached certificate that decides ``converged``), find
the hand-derived equilibrium of ``tests/market/known_answer.py``, and label an infeasible
instance (a QoE floor no reward can buy) ``infeasible`` instead of raising or claiming
convergence. A solver added to the registry is tested here without a new line.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import solvers
from market.errors import UserError
from market.model import Market
from solvers.certificate import Certificate
from solvers.registry import REGISTRY
from solvers.result import STATUSES, EquilibriumResult
from tests.market.known_answer import KNOWN_REWARDS, KNOWN_UTILITY, known_answer_scenario

#: The certificate tolerance of the battery: tight enough to pin the known answer, loose enough
#: for the stochastic SPSA (which certifies at 4.7e-5 relative regret after 3,000 iterations).
TOLERANCE = 1e-4
MAX_ITERATIONS = 3000


def _unavailable(name: str) -> str | None:
    """Why a registered solver cannot run on this machine (e.g. no Ipopt), else None."""
    if name == "pyomo":
        from solvers.pyomo_reference import ipopt_unavailable_reason

        return ipopt_unavailable_reason()
    return None


@pytest.fixture(params=sorted(REGISTRY))
def solver(request) -> str:
    reason = _unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param} unavailable here: {reason}")
    return request.param


def _known() -> tuple[EquilibriumResult, Market]:
    scenario = known_answer_scenario()
    return scenario, Market.from_scenario(scenario)


def _solve(source, name):
    return solvers.solve(source, name, tolerance=TOLERANCE, max_iterations=MAX_ITERATIONS)


def test_result_fields_status_and_certificate(solver):
    scenario, market = _known()
    result = _solve(scenario, solver)
    assert isinstance(result, EquilibriumResult)
    assert result.solver == solver
    assert result.status in STATUSES and result.solver_status in STATUSES
    assert result.rewards.shape == (market.n_mus,) and np.all(np.isfinite(result.rewards))
    assert np.all(result.rewards >= market.reward_min - 1e-12) and np.all(result.rewards <= market.reward_max + 1e-12)
    assert result.iterations >= 0 and result.solve_time_s >= 0 and result.certificate_time_s >= 0
    assert isinstance(result.certificate, Certificate)
    assert (result.status == "converged") == bool(result.certificate.passed)
    assert result.certificate.tolerance == pytest.approx(TOLERANCE)
    document = result.to_dict()
    json.dumps(document, allow_nan=False)  # result.json is strict JSON
    assert document["status"] == result.status and document["solver"] == solver
    assert document["certificate"]["passed"] is bool(result.certificate.passed)
    assert len(document["mus"]) == market.n_mus and len(document["asps"]) == market.n_asps


def test_known_answer(solver):
    """r = (1, 1, 1), utilities (1, 3.6, 3.6): derived by hand in tests/market/known_answer.py."""
    scenario, _ = _known()
    result = _solve(scenario, solver)
    assert result.status == "converged", (solver, result.status, result.message)
    names = result.market.mu_names
    # a regret of 1e-4 leaves a flat optimum's reward uncertain to ~sqrt(1e-4) = 1e-2 (SPSA:
    # 1.039), and the pair's utilities move at first order with the other MU's reward
    assert np.allclose(result.rewards, [KNOWN_REWARDS[n] for n in names], atol=0.05)
    assert np.allclose(result.utility, [KNOWN_UTILITY[n] for n in names], rtol=1e-2)
    assert result.certificate.max_relative_regret <= TOLERANCE


def test_infeasible_qoe_floor_is_labelled_infeasible(solver):
    """MU a's QoE is at most 1 - 0.5 / sqrt(2.5) = 0.684 on its reward box: a floor of 0.9 is
    unreachable, and every solver must say so with its status (not converge, not raise)."""
    scenario, _ = _known()
    first = dataclasses.replace(scenario.mus[0], qoe_required=0.9)
    impossible = dataclasses.replace(scenario, mus=(first,) + scenario.mus[1:])
    result = solvers.solve(impossible, solver, tolerance=TOLERANCE, max_iterations=200)
    assert result.status == "infeasible", (solver, result.status, result.message)
    assert result.certificate is not None and not result.certificate.passed
    assert result.certificate.floor_violation > TOLERANCE


def test_unsupported_variant_is_a_clear_error(solver):
    """A solver refuses model variants it does not declare, naming them (never a wrong answer)."""
    from market.generator import generate_scenario

    spec = REGISTRY[solver]
    for bandwidth_model, asp_cost in (("shannon", "linear"), ("linear", "quadratic")):
        market = Market.from_scenario(generate_scenario(2, 3, seed=1, bandwidth_model=bandwidth_model, asp_cost=asp_cost))
        if not spec.supports(market):
            with pytest.raises(UserError, match="does not handle"):
                solvers.solve(market, solver)


def test_every_entry_is_described():
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.description
        assert set(spec.variants) == {"bandwidth_model", "asp_cost"}
        assert callable(spec.load())  # the module and its function exist
