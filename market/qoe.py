"""The three-part QoE metric and the latency it depends on (design note, "QoE").

What this module is for: pure, vectorised formulas. For MU m served by ASP n with compute
f_m (compute units) and bandwidth b_m (Hz):

* delivered tokens l_m = min(L_m, l^max_n),
* latency t_m = l_m c_n / f_m + D_m / rate_m(b_m) seconds, with rate = e_m b_m (linear)
  or b_m log2(1 + snr_m / b_m) (Shannon),
* QoE_m = w^A A_n + w^L l_m / L_m + w^T (1 - t_m / T_m); a zero-weight term contributes 0.

:func:`qoe_formula` is the one definition of the QoE: :func:`qoe_parts` calls it with the
market's modelled accuracy, tokens and latency, and the pipeline calls it with the measured
ones (``incentive run``'s measured QoE). With per-MU trials N_m (``Market.with_trials``) the
compute work is N_m l_m c_n, the payload the N_m outputs and A_m the best-of-N accuracy.

May import: numpy and ``market.model``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.model import Market

_LN2 = np.log(2.0)


def transmission_rate(market: Market, bandwidth: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """Downlink rate (bit/s) for bandwidth ``bandwidth`` (Hz); 0 where bandwidth is 0.

    ``mus`` selects the MUs the entries of ``bandwidth`` belong to (default: all, in order);
    ``bandwidth`` may have a trailing grid axis.
    """
    b = np.asarray(bandwidth, dtype=float)
    idx = slice(None) if mus is None else mus
    if market.bandwidth_model == "linear":
        eff = market.spectral_efficiency[idx]
        return eff.reshape(eff.shape + (1,) * (b.ndim - eff.ndim)) * b
    snr = market.snr_hz[idx]
    snr = snr.reshape(snr.shape + (1,) * (b.ndim - snr.ndim))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = b * np.log1p(snr / b) / _LN2
    return np.where(b > 0, rate, 0.0)


def latency_parts(market: Market, compute: np.ndarray, bandwidth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(computation latency, transmission latency) in seconds per MU; inf where a resource is 0."""
    compute = np.asarray(compute, dtype=float)
    work = market.compute_work_s
    rate = transmission_rate(market, bandwidth)
    with np.errstate(divide="ignore"):
        t_compute = np.where(compute > 0, work / np.where(compute > 0, compute, 1.0), np.inf)
        t_transmit = np.where(rate > 0, market.payload_bits / np.where(rate > 0, rate, 1.0), np.inf)
    return t_compute, t_transmit


@dataclass(frozen=True)
class QoEParts:
    """Per-MU QoE and its parts (dimensionless; latency in seconds)."""

    accuracy: np.ndarray
    """w^A A_{a(m)}."""
    tokens: np.ndarray
    """w^L l_m / L_m."""
    timeliness: np.ndarray
    """w^T (1 - t_m / T_m); 0 where w^T = 0 (whatever the latency)."""
    latency_s: np.ndarray
    """t_m, seconds (inf where the MU got no compute or no bandwidth)."""
    total: np.ndarray
    """QoE_m = accuracy + tokens + timeliness."""


def qoe_formula(weight_accuracy, weight_tokens, weight_timeliness, accuracy, tokens_delivered, tokens_requested,
                latency_s, deadline_s) -> QoEParts:
    """``w^A A + w^L min(l, L) / L + w^T (1 - t / T)`` and its parts, elementwise (design note, "QoE").

    Parameters
    ----------
    weight_accuracy, weight_tokens, weight_timeliness : array_like
        The personal weights (>= 0, sum 1).
    accuracy : array_like
        Accuracy received, 0..1 (modelled A, or measured).
    tokens_delivered, tokens_requested : array_like
        Tokens received and requested (the token term is ``min(l, L) / L``).
    latency_s, deadline_s : array_like
        Latency and deadline in seconds; a zero timeliness weight contributes 0 whatever the
        latency (also an infinite one).
    """
    w_a, w_l, w_t = (np.asarray(w, dtype=float) for w in (weight_accuracy, weight_tokens, weight_timeliness))
    latency = np.asarray(latency_s, dtype=float)
    requested = np.asarray(tokens_requested, dtype=float)
    with np.errstate(invalid="ignore"):
        timeliness = np.where(w_t > 0, w_t * (1.0 - latency / np.asarray(deadline_s, dtype=float)), 0.0)
    accuracy_part = w_a * np.asarray(accuracy, dtype=float)
    tokens_part = w_l * np.minimum(np.asarray(tokens_delivered, dtype=float), requested) / requested
    return QoEParts(accuracy=accuracy_part, tokens=tokens_part, timeliness=timeliness, latency_s=latency,
                    total=accuracy_part + tokens_part + timeliness)


def qoe_parts(market: Market, compute: np.ndarray, bandwidth: np.ndarray) -> QoEParts:
    """QoE and its three parts for an allocation (design note, "QoE"), by :func:`qoe_formula`."""
    t_compute, t_transmit = latency_parts(market, compute, bandwidth)
    return qoe_formula(market.weight_accuracy, market.weight_tokens, market.weight_timeliness,
                       market.accuracy_received, market.tokens_delivered, market.tokens_requested,
                       t_compute + t_transmit, market.deadline_s)


def compute_loss(market: Market, compute: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """QoE lost to computation latency, x^f_m / f_m (0 where x^f_m = 0)."""
    idx = slice(None) if mus is None else mus
    need = market.timeliness_compute_need[idx]
    f = np.asarray(compute, dtype=float)
    need = need.reshape(need.shape + (1,) * (f.ndim - need.ndim))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(need > 0, need / f, 0.0)


def bandwidth_loss(market: Market, bandwidth: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """QoE lost to transmission latency, w^T D_m / (T_m rate_m(b_m)) (0 where w^T = 0)."""
    idx = slice(None) if mus is None else mus
    b = np.asarray(bandwidth, dtype=float)
    scale = (market.weight_timeliness * market.payload_bits / market.deadline_s)[idx]
    scale = scale.reshape(scale.shape + (1,) * (b.ndim - scale.ndim))
    rate = transmission_rate(market, b, mus)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, scale / rate, 0.0)


def bandwidth_loss_slope(market: Market, bandwidth: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """-d(bandwidth_loss)/db (QoE per Hz, >= 0): the marginal QoE of one more Hz."""
    idx = slice(None) if mus is None else mus
    b = np.asarray(bandwidth, dtype=float)
    scale = (market.weight_timeliness * market.payload_bits / market.deadline_s)[idx]
    rate = transmission_rate(market, b, mus)
    if market.bandwidth_model == "linear":
        slope_rate = market.spectral_efficiency[idx]
    else:
        snr_over_b = market.snr_hz[idx] / b
        slope_rate = (np.log1p(snr_over_b) - snr_over_b / (1.0 + snr_over_b)) / _LN2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, scale * slope_rate / rate**2, 0.0)
