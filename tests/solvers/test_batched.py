"""Batched small markets: one call for K same-shape markets, per-market certificates equal to
solving each market alone; the torch backend (CPU here) reaches certified equilibria too."""
from __future__ import annotations

import numpy as np
import pytest

from market.errors import UserError
from market.generator import generate_scenario
from market.model import Market
from solvers import solve
from solvers.batched import solve_batch, stack_markets
from solvers.certificate import certify


@pytest.fixture(scope="module")
def markets():
    return [Market.from_scenario(generate_scenario(3, 12, seed)) for seed in range(6)]


def test_numpy_batch_certificates_match_single_markets(markets):
    batch = solve_batch(markets)
    assert batch.rewards.shape == (6, 12) and batch.passed.all(), batch.max_relative_regret
    for k, mk in enumerate(markets):
        alone = certify(mk, batch.rewards[k])
        part = batch.market_certificate(k)
        np.testing.assert_allclose(part.regret, alone.regret, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(part.kkt_residual, alone.kkt_residual, rtol=1e-9, atol=1e-15)
        assert part.passed == alone.passed
        assert batch.max_relative_regret[k] == pytest.approx(alone.max_relative_regret, rel=1e-9, abs=1e-16)


def test_a_bad_profile_fails_only_its_own_market(markets):
    batch = solve_batch(markets)
    union = batch.union
    rewards = batch.rewards.copy()
    rewards[2] = markets[2].reward_max  # market 2 moved away from its equilibrium
    cert = certify(union, rewards.reshape(-1))
    rel = cert.relative_regret.reshape(6, 12).max(axis=1)
    assert rel[2] > 1e-3 and np.all(np.delete(rel, 2) <= 1e-6)


def test_torch_backend_on_cpu_is_certified(markets):
    pytest.importorskip("torch")
    markets = markets[:3]
    batch = solve_batch(markets, backend="torch", device="cpu")
    assert batch.backend == "torch:cpu" and batch.passed.all(), batch.max_relative_regret
    single = [solve(mk) for mk in markets]
    smooth = [k for k, res in enumerate(single) if res.certificate.passed]
    # where the equilibrium is unique the two paths agree (kink markets may differ and both pass)
    close = [np.max(np.abs(batch.rewards[k] - single[k].rewards) / single[k].rewards) < 1e-4 for k in smooth]
    assert sum(close) >= len(smooth) // 2


def test_shapes_must_match(markets):
    with pytest.raises(UserError, match="ASPs x"):
        stack_markets([markets[0], Market.from_scenario(generate_scenario(2, 5, 0))])


def test_failed_markets_are_resolved_alone(markets):
    raw = solve_batch(markets, max_iterations=2, resolve_failed=False)
    assert not raw.passed.all() and not raw.resolved  # two rounds are not enough
    fixed = solve_batch(markets, max_iterations=2)
    failed = set(np.flatnonzero(~raw.passed).tolist())
    assert set(fixed.resolved) == failed
    for k in failed:
        assert fixed.market_certificate(k).max_relative_regret == fixed.max_relative_regret[k]


def test_a_qoe_floor_violation_is_its_own_markets_not_the_batchs(markets):
    import dataclasses

    floored = dataclasses.replace(markets[1], qoe_required=np.where(np.arange(markets[1].n_mus) == 0,
                                                                     2.0 * markets[1].qoe_ceiling, np.nan))
    batch = solve_batch([markets[0], floored, markets[2]], resolve_failed=False)
    for k, mk in enumerate([markets[0], floored, markets[2]]):
        alone = certify(mk, batch.rewards[k])
        part = batch.market_certificate(k)
        assert part.floor_violation == pytest.approx(alone.floor_violation)
        assert part.passed == alone.passed
    assert batch.floor_violation[1] > 0 and batch.floor_violation[0] == 0 == batch.floor_violation[2]
