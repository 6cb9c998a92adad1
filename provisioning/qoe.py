"""QoE, cost, the ASP's objective (eq. (22)) and the reward with penalties (section V-C).

What this module is for
-----------------------
The provisioning *objective*: the ASP's utility of the provisioning paper's section V-B (its
"QoE" is a latency factor times a Weber-Fechner quality factor, eq. (23)). It is not the
users' QoE of the market: that one has a single definition, ``market.qoe.qoe_formula``, used
for both modelled and measured QoE. Pure functions, with the documented fixes:

* latency factor ``ln(L_max / (N T)) / ln(1 + N)`` — the paper's ``log_N(L_max/(N T))`` is
  undefined at ``N = 1``;
* quality factor (Weber-Fechner) ``ln(max_j q_ij / q^th_i)``;
* ``QoE_i = latency factor x quality factor`` (eq. (23));
* cost ``C_i = N_i (c zeta + P_i)`` (eq. (24));
* utility ``sum_i (eta_q w_i QoE_i - eta_c C_i)`` (eq. (22a), with per-user weights ``w_i`` from
  the market);
* reward = utility - ``rho`` x (users violating (22b) or (22c)) - ``phi`` x [(22d) violated].

:func:`evaluate_allocation` puts them together for one state and allocation, either in
expectation (exact: the quality factor is linear in the log score, see ``provisioning.quality``)
or for one sampled draw of scores and channel. The constraint (22b) is always judged on the
expected QoE, so the sampled reward is an unbiased estimate of the expected one.

May import: numpy, ``provisioning.channel``, ``provisioning.quality``, ``provisioning.scenario``,
``provisioning.state``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from provisioning.channel import awgn_ber, expected_ber, sample_instantaneous_snr
from provisioning.quality import QualityModel, expected_log_best_quality, sample_log_best_quality
from provisioning.scenario import ProvisioningConfig
from provisioning.state import State

__all__ = [
    "latency_factor",
    "quality_factor",
    "qoe",
    "cost",
    "Outcome",
    "evaluate_allocation",
    "BUDGET_TOLERANCE",
    "QOE_TOLERANCE",
]

#: Relative slack allowed on the power budget (22d) before it counts as violated.
BUDGET_TOLERANCE = 1e-9
#: Absolute slack on the QoE floor (22b): ``QoE_i < Q^th_i - QOE_TOLERANCE`` is a violation.
QOE_TOLERANCE = 1e-9


def latency_factor(trials, seconds_per_trial, max_latency_s):
    """``ln(L_max / (N T)) / ln(1 + N)`` (eq. (23) with the ``N = 1`` fix; dimensionless).

    Parameters
    ----------
    trials : array_like of int
        ``N_i >= 1``.
    seconds_per_trial : array_like
        ``T``, seconds per trial.
    max_latency_s : float
        ``L_max``, seconds.
    """
    n = np.asarray(trials, dtype=float)
    return np.log(max_latency_s / (n * np.asarray(seconds_per_trial, dtype=float))) / np.log1p(n)


def quality_factor(log_best_quality, quality_threshold):
    """Weber-Fechner factor ``ln(max_j q_ij / q^th) = ln max_j q_ij - ln q^th`` (dimensionless)."""
    return np.asarray(log_best_quality, dtype=float) - np.log(np.asarray(quality_threshold, dtype=float))


def qoe(trials, seconds_per_trial, max_latency_s, log_best_quality, quality_threshold):
    """``Q(N_i, P_i)`` of eq. (23): latency factor times quality factor."""
    return latency_factor(trials, seconds_per_trial, max_latency_s) * quality_factor(log_best_quality, quality_threshold)


def cost(trials, power_w, compute_cost_per_step, diffusion_steps):
    """``C(N_i, P_i) = N_i (c zeta + P_i)`` of eq. (24) (cost units; powers in watts)."""
    return np.asarray(trials, dtype=float) * (compute_cost_per_step * diffusion_steps + np.asarray(power_w, dtype=float))


@dataclass(frozen=True)
class Outcome:
    """Everything one allocation produces in one state.

    Attributes
    ----------
    qoe : ndarray (Q,)
        QoE per user (expected, or sampled in sampled mode).
    expected_qoe : ndarray (Q,)
        Expected QoE per user (the one constraint (22b) is judged on).
    cost : ndarray (Q,)
        ``C_i``.
    expected_ber : ndarray (Q,)
        ``E[BER_i]`` (eq. (10)).
    utility : float
        ``sum_i eta_q w_i QoE_i - eta_c C_i`` (eq. (22a)), no penalties.
    penalty : float
        ``rho (J_qoe + J_trials) + phi [budget exceeded]``.
    reward : float
        ``utility - penalty``.
    qoe_violations : int
        Users with expected QoE below ``Q^th_i`` (22b).
    trial_violations : int
        Users with ``N_i`` outside ``[1, N_max]`` (22c).
    budget_violated : bool
        ``sum P_i > P_total`` (22d).
    """

    qoe: np.ndarray
    expected_qoe: np.ndarray
    cost: np.ndarray
    expected_ber: np.ndarray
    utility: float
    penalty: float
    reward: float
    qoe_violations: int
    trial_violations: int
    budget_violated: bool


def evaluate_allocation(
    config: ProvisioningConfig,
    state: State,
    trials,
    power_w,
    *,
    quality_model: QualityModel | None = None,
    rng: np.random.Generator | None = None,
) -> Outcome:
    """QoE, cost, utility and penalised reward of one allocation (eqs. (22)-(24), section V-C).

    Parameters
    ----------
    config : ProvisioningConfig
    state : State
    trials : array_like of int, shape (Q,)
    power_w : array_like, shape (Q,)
        Transmit power per user, watts.
    quality_model : QualityModel, optional
        Defaults to the scenario's simulated backend.
    rng : numpy Generator, optional
        When given, scores and channel are sampled once (sampled reward); otherwise the exact
        expectation is returned.
    """
    quality_model = config.quality if quality_model is None else quality_model
    obj = config.objective
    trials = np.asarray(trials)
    power_w = np.asarray(power_w, dtype=float)
    valid_trials = np.clip(trials, 1, config.max_trials).astype(int)
    seconds = np.asarray(config.latency.seconds_per_trial())
    gbar = state.mean_snr_per_watt(config) * np.maximum(power_w, 0.0)
    eber = expected_ber(gbar, config.channel)
    mean_log, std_log, kappa = quality_model.log_quality_params(state.difficulty)
    lf = latency_factor(valid_trials, seconds, config.latency.max_latency_s)
    expected_q = lf * quality_factor(expected_log_best_quality(valid_trials, mean_log, std_log, kappa, eber), state.quality_threshold)
    if rng is None:
        realised_q = expected_q
    else:
        ber = awgn_ber(sample_instantaneous_snr(gbar, config.channel, rng))
        log_best = sample_log_best_quality(valid_trials, mean_log, std_log, kappa, ber, rng)
        realised_q = lf * quality_factor(log_best, state.quality_threshold)
    costs = cost(valid_trials, power_w, obj.compute_cost_per_step, obj.diffusion_steps)
    weights = np.asarray(obj.user_weights, dtype=float)
    utility = float(obj.qoe_weight * weights @ realised_q - obj.cost_weight * costs.sum())
    qoe_violations = int(np.sum(expected_q < np.asarray(obj.min_qoe) - QOE_TOLERANCE))
    trial_violations = int(np.sum((trials < 1) | (trials > config.max_trials) | (trials != np.round(trials))))
    budget_violated = bool(power_w.sum() > state.p_total_w * (1.0 + BUDGET_TOLERANCE) or np.any(power_w < 0))
    penalty = obj.penalty_per_user * (qoe_violations + trial_violations) + obj.penalty_budget * budget_violated
    return Outcome(
        qoe=realised_q,
        expected_qoe=expected_q,
        cost=costs,
        expected_ber=eber,
        utility=utility,
        penalty=float(penalty),
        reward=utility - float(penalty),
        qoe_violations=qoe_violations,
        trial_violations=trial_violations,
        budget_violated=budget_violated,
    )
