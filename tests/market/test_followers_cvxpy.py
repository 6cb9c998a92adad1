"""The cvxpy follower (rewards as DPP parameters) against the closed form and the dual follower."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from market.followers import CvxpyFollower, best_response, closed_form_response, dual_deviation_qoe, \
    dual_response, closed_form_deviation_qoe, kkt_residuals
from market.generator import generate_scenario
from market.model import Market

VARIANTS = [("shannon", "linear"), ("linear", "quadratic"), ("shannon", "quadratic")]


@pytest.fixture(autouse=True)
def _quiet_solver_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Solution may be inaccurate")
        yield


def _relative_gap(a, b, scale):
    return float(np.max(np.abs(a - b) / scale))


def test_cvxpy_agrees_with_closed_form_and_reuses_parameters():
    mk = Market.from_scenario(generate_scenario(3, 10, seed=0))
    follower = CvxpyFollower(mk)
    problem = follower.problems[0]["problem"]
    assert problem.is_dcp(dpp=True) and problem.parameters()
    rng = np.random.default_rng(3)
    for _ in range(3):  # several reward profiles through the same compiled problems
        r = rng.uniform(mk.reward_min, mk.reward_max)
        exact = closed_form_response(mk, r)
        conic = follower.respond(r)
        assert _relative_gap(conic.compute, exact.compute, mk.compute_capacity[mk.mu_asp]) < 1e-5
        assert _relative_gap(conic.bandwidth, exact.bandwidth, mk.bandwidth_capacity[mk.mu_asp]) < 1e-5
        assert np.allclose(conic.compute_price, exact.compute_price, rtol=1e-4, atol=1e-12)
        assert np.allclose(conic.bandwidth_price, exact.bandwidth_price, rtol=1e-4, atol=1e-16)
        assert np.allclose(conic.qoe.total, exact.qoe.total, atol=1e-6)
        assert kkt_residuals(mk, conic).max < 1e-4


@pytest.mark.parametrize("bandwidth_model,asp_cost", VARIANTS)
def test_variants_cvxpy_and_dual_agree(bandwidth_model, asp_cost):
    mk = Market.from_scenario(generate_scenario(3, 9, seed=1, bandwidth_model=bandwidth_model, asp_cost=asp_cost))
    r = np.random.default_rng(5).uniform(mk.reward_min, mk.reward_max)
    conic = CvxpyFollower(mk).respond(r)
    dual = dual_response(mk, r)
    assert best_response(mk, r).method == "dual"
    assert _relative_gap(conic.compute, dual.compute, mk.compute_capacity[mk.mu_asp]) < 1e-5
    assert _relative_gap(conic.bandwidth, dual.bandwidth, mk.bandwidth_capacity[mk.mu_asp]) < 1e-5
    assert np.allclose(conic.qoe.total, dual.qoe.total, atol=1e-6)
    assert kkt_residuals(mk, dual).max < 1e-9
    assert np.all(mk.per_asp_sum(dual.compute) <= mk.compute_capacity * (1 + 1e-12))
    assert np.all(mk.per_asp_sum(dual.bandwidth) <= mk.bandwidth_capacity * (1 + 1e-12))


def test_variant_changes_the_answer():
    """Shannon and quadratic really are different models from the linear one."""
    lin = Market.from_scenario(generate_scenario(3, 9, seed=1))
    sha = Market.from_scenario(generate_scenario(3, 9, seed=1, bandwidth_model="shannon"))
    r = 0.5 * (lin.reward_min + lin.reward_max)
    assert not np.allclose(closed_form_response(lin, r).bandwidth, dual_response(sha, r).bandwidth, rtol=1e-3)


def test_dual_follower_equals_closed_form_on_linear_model():
    mk = Market.from_scenario(generate_scenario(4, 20, seed=2))
    r = np.random.default_rng(2).uniform(mk.reward_min, mk.reward_max)
    a, b = closed_form_response(mk, r), dual_response(mk, r)
    assert np.allclose(a.compute, b.compute, rtol=1e-10) and np.allclose(a.bandwidth, b.bandwidth, rtol=1e-10)
    grid = np.linspace(mk.reward_min, mk.reward_max, 5).T
    assert np.allclose(dual_deviation_qoe(mk, r, grid), closed_form_deviation_qoe(mk, r, grid), atol=1e-12)


def test_cvxpy_deviation_matches_dual_on_variant():
    mk = Market.from_scenario(generate_scenario(2, 5, seed=3, bandwidth_model="shannon", asp_cost="quadratic"))
    r = 0.5 * (mk.reward_min + mk.reward_max)
    trial = np.stack([mk.reward_min, mk.reward_max], axis=1)
    assert np.allclose(CvxpyFollower(mk).deviation_qoe(r, trial), dual_deviation_qoe(mk, r, trial), atol=1e-6)


@pytest.mark.parametrize("bandwidth_model,asp_cost", VARIANTS)
def test_zero_unit_costs_bind_every_capacity(bandwidth_model, asp_cost):
    """With free resources every used capacity binds (multiplier > 0), also for a lone MU."""
    import dataclasses

    scn = generate_scenario(2, 4, seed=3, bandwidth_model=bandwidth_model, asp_cost=asp_cost)
    scn = dataclasses.replace(scn, asps=tuple(dataclasses.replace(a, compute_cost=0.0, bandwidth_cost=0.0)
                                              for a in scn.asps))
    mk = Market.from_scenario(scn)
    assert np.bincount(mk.mu_asp).min() == 1  # a lone MU at one ASP
    r = 0.5 * (mk.reward_min + mk.reward_max)
    dual = dual_response(mk, r)
    assert kkt_residuals(mk, dual).max < 1e-9
    assert np.all(dual.compute_multiplier > 0) and np.all(dual.bandwidth_multiplier > 0)
    assert np.allclose(mk.per_asp_sum(dual.bandwidth), mk.bandwidth_capacity, rtol=1e-10)
    conic = CvxpyFollower(mk).respond(r)
    assert _relative_gap(conic.bandwidth, dual.bandwidth, mk.bandwidth_capacity[mk.mu_asp]) < 1e-5
