"""Sensitivities by the implicit function theorem against finite differences of re-solves.

Away from kinks the complex-step IFT derivatives of every output must match central
differences of independently re-solved equilibria (warm-started solver, then Newton-polished
with the implicit-gradient oracle's own derivatives) to 1e-4 relative. At a kink the
derivatives are one-sided and no two-sided value is claimed.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import solvers
from market.generator import generate_scenario
from market.model import Market
from market.scenario import load_scenario
from solvers.sensitivity import (ASP_OUTPUTS, MU_OUTPUTS, _outputs, continuation_solve, equilibrium_sensitivity,
                                 polish, scenario_parameters, with_parameter)

ROOT = Path(__file__).resolve().parents[2]


def _equilibrium(scn):
    market = Market.from_scenario(scn)
    result = solvers.solve(market, "implicit-gradient", tolerance=1e-13)
    assert result.status == "converged"
    return polish(market, result.rewards)


def _distance_scenario():
    """small.toml with every MU's link given by distance (exercises the path-loss chain rule)."""
    scn = load_scenario(ROOT / "scenarios" / "small.toml")
    mus = tuple(dataclasses.replace(m, spectral_efficiency=None, distance_m=80.0 + 15 * i) for i, m in enumerate(scn.mus))
    return dataclasses.replace(scn, mus=mus)


SMOOTH = {
    "default": lambda: load_scenario(ROOT / "scenarios" / "default.toml"),
    "small": lambda: load_scenario(ROOT / "scenarios" / "small.toml"),
    "generated-3x12-seed2": lambda: generate_scenario(3, 12, 2),
    "generated-4x24-seed5": lambda: generate_scenario(4, 24, 5),
    "distance-links": _distance_scenario,
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_matches_finite_differences_away_from_kinks(name):
    scn = SMOOTH[name]()
    rewards = _equilibrium(scn)
    sens = equilibrium_sensitivity(scn, rewards)
    assert not sens.kinks and np.all(sens.method == "implicit"), sens.kinks
    params = sens.parameters
    # every field of the first two ASPs and of the market, and every MU field kind at a random MU
    rng = np.random.default_rng(0)
    chosen = [j for j, p in enumerate(params) if p.table == "market" or (p.table == "asp" and p.index < 2)]
    for kind in sorted({p.field for p in params if p.table == "mu"}):
        chosen.append(int(rng.choice([j for j, p in enumerate(params) if p.table == "mu" and p.field == kind])))
    worst = 0.0
    for j in chosen:
        p = params[j]
        h = 1e-5 * abs(p.value)
        if h == 0:
            continue
        up, down = (_outputs(continuation_solve(with_parameter(scn, p, p.value + s * h), rewards, smooth=True))
                    for s in (1, -1))
        for out in MU_OUTPUTS + ASP_OUTPUTS:
            fd = (up[out] - down[out]) / (2 * h)
            exact = sens.right[out][:, j].toarray().ravel()
            assert np.array_equal(exact, sens.left[out][:, j].toarray().ravel())
            scale = np.max(np.abs(exact), initial=0.0)
            floor = 1e-9 * np.max(np.abs(sens.base[out]), initial=0.0) / abs(p.value)  # an output that does not move
            err = np.max(np.abs(fd - exact), initial=0.0)
            worst = max(worst, err / max(scale, floor))
            assert err <= 1e-4 * scale + floor, f"{p.label} -> {out}: IFT {exact} vs FD {fd}"
    assert worst < 1e-4


def test_one_sided_derivatives_at_a_kink():
    """One MU alone at an ASP whose compute capacity is exactly at the kink of its slack optimum:
    more capacity changes nothing (right derivative 0); less capacity pulls the reward down the
    kink r = C^2 k / x (left derivative 2 C k / x). No two-sided derivative exists."""
    scn = generate_scenario(1, 1, seed=3)
    asp = dataclasses.replace(scn.asps[0], compute_capacity=1e6, bandwidth_capacity=1e12)
    scn = dataclasses.replace(scn, asps=(asp,))
    market = Market.from_scenario(scn)
    r_slack = _equilibrium(scn)[0]
    x, k = market.timeliness_compute_need[0], market.compute_cost[0]
    assert market.reward_min[0] < r_slack < market.reward_max[0]
    capacity = float(np.sqrt(x * r_slack / k))
    scn = dataclasses.replace(scn, asps=(dataclasses.replace(asp, compute_capacity=capacity),))
    sens = equilibrium_sensitivity(scn, np.array([r_slack]))
    j = [p.label for p in sens.parameters].index(f"{asp.name}.compute_capacity")
    assert sens.method[j] == "one-sided" and sens.one_sided[j]
    assert any("compute capacity at its kink" in text for text in sens.kinks)
    left, right = sens.left["reward"][0, j], sens.right["reward"][0, j]
    assert abs(right) <= 1e-6 * abs(left)
    assert left == pytest.approx(2 * capacity * k / x, rel=1e-3)
    assert sens.derivative("reward")[0, j] == 0  # no two-sided value is claimed


def test_generated_market_at_a_kink_reports_one_sided_for_that_asp_only():
    scn = generate_scenario(4, 24, 9)  # asp1's compute capacity sits at its kink (5 of 12 such markets do)
    result = solvers.solve(scn)
    sens = equilibrium_sensitivity(scn, result.rewards)
    assert sens.kink_blocks.tolist() == [False, True, False, False]
    one_sided = {p.block for p, m in zip(sens.parameters, sens.method) if m == "one-sided"}
    assert one_sided == {1}
    assert np.all(np.isfinite(sens.aggregate("left")["welfare"]))
    assert sens.continuation_failures == 0


def test_parameters_cover_every_numeric_field():
    scn = load_scenario(ROOT / "scenarios" / "default.toml")
    params = scenario_parameters(scn)
    assert len(params) == 7 * len(scn.asps) + 10 * len(scn.mus)
    distance = scenario_parameters(_distance_scenario())
    assert {p.field for p in distance if p.table == "market"} == {
        "reference_bandwidth_hz", "noise_psd_w_per_hz", "path_loss_exponent", "path_loss_reference_gain"}
    assert any(p.field == "transmit_power_w" for p in distance)


def test_weights_move_together_and_stay_valid():
    scn = load_scenario(ROOT / "scenarios" / "small.toml")
    p = next(p for p in scenario_parameters(scn) if p.field == "weights.timeliness")
    moved = with_parameter(scn, p, p.value * 0.5).mus[p.index].weights
    assert moved.timeliness == pytest.approx(p.value * 0.5)
    assert moved.accuracy + moved.tokens + moved.timeliness == pytest.approx(1.0)


def test_model_variants_are_refused_with_a_reason():
    scn = load_scenario(ROOT / "scenarios" / "variants.toml")
    with pytest.raises(NotImplementedError, match="closed-form"):
        equilibrium_sensitivity(scn, np.full(len(scn.mus), 1.0))
