"""A hand-derived known-answer instance shared by the market and solver tests.

Two independent ASPs (followers never interact across ASPs).

ASP "solo" serves one MU "a"; its capacities never bind on the reward box.
    w = (0, 0, 1), l = L = 100 tokens, c = 0.01 s/token, T = 1 s   ->  x^f = w^T l c / T = 1
    D = 1e6 bit, e = 2 bit/s/Hz                                      ->  x^b = w^T D / (e T) = 5e5 Hz
    k^f = 0.04, k^b = 1.8e-7  ->  beta = sqrt(x^f k^f) + sqrt(x^b k^b) = 0.2 + 0.3 = 0.5
    With slack capacities pi^k = k^k, y^k = sqrt(x^k r / k^k) and
    Q(r) = 1 - beta / sqrt(r).  U(r) = (theta - r) Q(r) with theta = 3.
    U'(r) = -Q + (theta - r) beta / (2 r^{3/2}); put s = sqrt(r):
    q0 s^3 - (beta/2) s^2 - theta beta / 2 = 0  ->  s^3 - 0.25 s^2 - 0.75 = 0  ->  s = 1 (exact:
    1 - 0.25 - 0.75 = 0; the other roots are complex since s^3 - 0.25 s^2 - 0.75 = (s - 1)(s^2 + 0.75 s + 0.75)).
    So r_a = 1, f = sqrt(1 / 0.04) = 5, b = sqrt(5e5 / 1.8e-7) = 1,666,666.67 Hz,
    latency = 100 * 0.01 / 5 + 1e6 / (2 b) = 0.2 + 0.3 = 0.5 s, Q = 0.5, payment 0.5, U = 1.
    Slack check: f <= sqrt(x^f r_max / k^f) = sqrt(2.5 / 0.04) = 7.9 < F = 100; b < 1e8.

ASP "pair" serves two identical MUs "b", "c"; both capacities always bind.
    Same x^f = 1, x^b = 5e5; F = 10, B = 5e6, k^f = 0.01, k^b = 1e-8, theta = 7.
    Binding: S_{-m} + sqrt(x r) >= C sqrt(k) holds for every r > 0 since
    sqrt(x^f) = 1 >= 10 * 0.1 and sqrt(x^b) = 707.1 >= 5e6 * 1e-4 = 500.
    Binding loss: (x + sqrt(x / r_m) S_{-m}) / C with S_{-m} = sqrt(x r_other), so
    Q_m = 1 - sum_k (x_k + sqrt(x_k / r_m) sqrt(x_k r_o)) / C_k and
    dQ_m/dr_m = sum_k x_k sqrt(r_o) / (2 C_k r_m^{3/2}).
    alpha = x^f / F + x^b / B = 0.1 + 0.1 = 0.2. At r_m = r_o = r: Q = 1 - 2 alpha = 0.6,
    Q' = alpha / (2 r). FOC -Q + (theta - r) Q' = 0  ->  theta alpha / (2 r) = 1 - 1.5 alpha
    ->  r = theta alpha / (2 (1 - 1.5 alpha)) = 7 * 0.2 / 1.4 = 1.
    So r_b = r_c = 1, f = 5 each, b = 2.5e6 Hz each, pi^f = (2 sqrt(1)/10)^2 = 0.04,
    pi^b = (2 sqrt(5e5) / 5e6)^2 = 8e-8, Q = 0.6, U = (7 - 1) 0.6 = 3.6.
    U_m is concave in r_m (Q increasing and concave), so these first-order points are each
    MU's best response: r = (1, 1, 1) is an equilibrium.

Checked symbolically with sympy (in a throwaway environment; sympy is not a dependency):
solo: the only root of dU/dr = 0 is r = 1, U''(1) = -5/4, Q(1) = 1/2, U(1) = 1;
pair (own reward r, other r_o, symmetric FOC): the only root is r = 1, U''(1) = -11/10,
Q = 3/5, U = 18/5; thresholds C sqrt(k) = 1 and 500 against sqrt(x) = 1 and 707.1;
prices (2 sqrt(x) / C)^2 = 1/25 and 1/12,500,000 = 8e-8.
"""
from __future__ import annotations

from market.scenario import Scenario

KNOWN_REWARDS = {"a": 1.0, "b": 1.0, "c": 1.0}
KNOWN_QOE = {"a": 0.5, "b": 0.6, "c": 0.6}
KNOWN_UTILITY = {"a": 1.0, "b": 3.6, "c": 3.6}
KNOWN_COMPUTE = {"a": 5.0, "b": 5.0, "c": 5.0}
KNOWN_BANDWIDTH = {"a": 1.0e6 / 0.6, "b": 2.5e6, "c": 2.5e6}
KNOWN_PRICES = {"solo": (0.04, 1.8e-7), "pair": (0.04, 8e-8)}


def known_answer_document() -> dict:
    """The scenario document of the instance derived above."""
    asp = dict(accuracy=0.8, seconds_per_token=0.01, max_tokens=1000.0)
    mu = dict(weights={"accuracy": 0.0, "tokens": 0.0, "timeliness": 1.0}, tokens_requested=100.0,
              deadline_s=1.0, payload_bits=1.0e6, spectral_efficiency=2.0, reward_min=0.1)
    return {
        "market": {"version": 1, "name": "known-answer"},
        "asp": [
            dict(name="solo", compute_capacity=100.0, bandwidth_capacity=1.0e8, compute_cost=0.04,
                 bandwidth_cost=1.8e-7, **asp),
            dict(name="pair", compute_capacity=10.0, bandwidth_capacity=5.0e6, compute_cost=0.01,
                 bandwidth_cost=1.0e-8, **asp),
        ],
        "mu": [
            dict(name="a", asp="solo", value_per_qoe=3.0, reward_max=2.5, **mu),
            dict(name="b", asp="pair", value_per_qoe=7.0, reward_max=5.0, **mu),
            dict(name="c", asp="pair", value_per_qoe=7.0, reward_max=5.0, **mu),
        ],
    }


def known_answer_scenario() -> Scenario:
    """The instance as a validated Scenario."""
    return Scenario.from_dict(known_answer_document(), file="<known-answer>")
