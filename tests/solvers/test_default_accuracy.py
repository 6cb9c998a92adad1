"""At the DEFAULT tolerance, certified rewards agree with the Pyomo reference to 1e-4 relative
where the equilibrium is unique (no ASP capacity at its slack/binding kink).

Regret is quadratic in the reward error, so the solver also stops on the length of each
MU's Newton step (``solvers.ascent.REWARD_TOLERANCE``); before that rule the default answer
differed from the reference by about 1e-3.
"""
from __future__ import annotations

import numpy as np
import pytest

from market.generator import generate_scenario
from market.model import Market
from solvers import solve
from solvers.pyomo_reference import ipopt_unavailable_reason
from tests.solvers.test_pyomo_reference import _describe, _kink_asps

REASON = ipopt_unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"Pyomo reference unavailable: {REASON}")
@pytest.mark.ipopt
@pytest.mark.parametrize("asps,mus,seed", [(1, 3, 0), (2, 6, 1), (3, 12, 3), (3, 12, 7)])
def test_default_tolerance_rewards_match_reference(asps, mus, seed):
    market = Market.from_scenario(generate_scenario(asps, mus, seed))
    default = solve(market, "dual-perturbation")
    reference = solve(market, "pyomo")
    assert default.certificate.passed, _describe("default", default)
    assert reference.certificate.passed, _describe("pyomo", reference)
    assert not (_kink_asps(market, default.rewards) or _kink_asps(market, reference.rewards))
    rel = np.abs(reference.rewards - default.rewards) / reference.rewards
    assert rel.max() <= 1e-4, f"max relative reward difference {rel.max():.3g}"
    # the certificate's own bound on the distance to each MU's best response agrees
    assert default.certificate.max_relative_reward_distance <= 1e-4
