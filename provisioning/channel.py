"""Wireless channel of the provisioning layer: Nakagami-m fading, path loss, shadowing, BER.

What this module is for
-----------------------
Section III-C of Liu et al., "Intelligent Mobile AI-Generated Content Services via Interactive
Prompt Engineering and Dynamic Service Provisioning" (the *provisioning paper*):

* mean SNR per watt of transmit power, ``Omega d^-alpha / N0`` (eqs. (4)-(6));
* the closed-form bit error rate of BPSK under Nakagami-m fading obtained with the moment
  generating function (MGF) approach (eq. (9)), and its exact derivative;
* the expected BER over log-normal shadowing (eq. (10)) by Gauss-Hermite quadrature;
* a Monte Carlo sampler of the instantaneous channel (eq. (6)) for sampled rewards and tests;
* the Fisher-Snedecor F composite fading model (Yoo, Cotton, Sofotasios, Matthaiou, Valkama and
  Karagiannidis, "The Fisher-Snedecor F Distribution: A Simple and Accurate Composite Fading
  Model", IEEE Commun. Lett. 21(7), 2017), which Du et al., "User-Centric Interactive AI for
  Distributed Diffusion Model-based AI-Generated Content", Fig. 11, uses for the server-to-device
  link (m = 2, m_s = 1.5): its average BPSK BER, an MGF cross-check and a sampler.

The closed form is written by hand because no library ships it; every special function comes
from :mod:`scipy.special`. Units: powers in watts, distances in metres, SNR as a linear power
ratio (not dB) unless a name ends in ``_db``.

Choices the paper leaves open (see ``docs/provisioning.md``):

* shadowing is ``10^(sigma_dB Z / 10)`` with ``sigma`` in dB (eq. (5) writes ``e^(sigma Z)``;
  the two agree with ``sigma_nat = sigma_dB ln(10)/10``);
* the modulation behind eq. (8) is BPSK, ``BER = Q(sqrt(2 SNR))``.

May import: numpy, scipy (nothing else of ours).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

__all__ = [
    "ChannelParams",
    "mean_snr_per_watt",
    "nakagami_ber",
    "nakagami_ber_hypergeometric",
    "nakagami_ber_derivative",
    "nakagami_ber_second_derivative",
    "expected_ber",
    "expected_ber_derivative",
    "gauss_hermite_shadowing",
    "sample_instantaneous_snr",
    "awgn_ber",
    "rayleigh_ber",
    "monte_carlo_ber",
    "fisher_snedecor_ber",
    "fisher_snedecor_ber_mgf",
    "sample_fisher_snedecor_snr",
]


@dataclass(frozen=True)
class ChannelParams:
    """Parameters of the wireless model of section III-C.

    Attributes
    ----------
    nakagami_m : float
        Fading severity ``m >= 0.5`` (``m = 1`` is Rayleigh, ``m -> inf`` is AWGN).
    nakagami_omega : float
        Spread ``Omega = E[X^2]`` of the Nakagami-m amplitude (dimensionless, > 0).
    path_loss_exponent : float
        Path-loss exponent ``alpha`` of ``d^-alpha`` (dimensionless, > 0).
    path_gain_at_1m_db : float
        Large-scale power gain at the 1 m reference distance, in dB (e.g. -40 dB, free space
        near 2.4 GHz); eq. (5) leaves this constant implicit.
    shadowing_sigma_db : float
        Standard deviation of log-normal shadowing, in dB (>= 0).
    noise_power_w : float
        Receiver noise power ``N0``, in watts (> 0).
    gauss_hermite_nodes : int
        Number of Gauss-Hermite nodes used for the expectation over shadowing (eq. (10)).
    """

    nakagami_m: float = 2.0
    nakagami_omega: float = 1.0
    path_loss_exponent: float = 3.0
    path_gain_at_1m_db: float = 0.0
    shadowing_sigma_db: float = 4.0
    noise_power_w: float = 1e-10
    gauss_hermite_nodes: int = 32


def mean_snr_per_watt(distance_m, params: ChannelParams):
    """Mean received SNR per watt of transmit power, ``Omega g0 d^-alpha / N0`` (eqs. (4)-(6)).

    ``g0 = 10^(path_gain_at_1m_db / 10)`` is the reference gain at 1 m.

    Shadowing is excluded (it is averaged over in :func:`expected_ber`).

    Parameters
    ----------
    distance_m : array_like
        User-to-ASP distance in metres (> 0).
    params : ChannelParams

    Returns
    -------
    ndarray
        Linear SNR per watt (1/W).
    """
    distance_m = np.asarray(distance_m, dtype=float)
    reference_gain = 10.0 ** (params.path_gain_at_1m_db / 10.0)
    return params.nakagami_omega * reference_gain * distance_m ** (-params.path_loss_exponent) / params.noise_power_w


def _log_gamma_ratio(m: float) -> float:
    """``ln(Gamma(m + 1/2) / Gamma(m + 1))``, computed without overflow."""
    return float(special.gammaln(m + 0.5) - special.gammaln(m + 1.0))


def nakagami_ber(mean_snr, m: float):
    """Closed-form BPSK bit error rate under Nakagami-m fading (MGF approach, eq. (9)).

    The MGF form ``BER(gbar) = (1/pi) int_0^{pi/2} (1 + gbar/(m sin^2 t))^-m dt`` has the closed
    form (Simon & Alouini, *Digital Communication over Fading Channels*, 2nd ed., (5A.4b))
    ``sqrt(c/pi) / (2 (1+c)^(m+1/2)) Gamma(m+1/2)/Gamma(m+1) 2F1(1, m+1/2; m+1; 1/(1+c))``,
    ``c = gbar/m``, which equals the regularised incomplete beta function
    ``BER = I_x(m, 1/2) / 2`` with ``x = m / (m + gbar)`` (integrate the exact derivative of
    :func:`nakagami_ber_derivative` from 0). We evaluate the incomplete-beta form with
    :func:`scipy.special.betainc`: it is the same closed form, about 50x faster than ``hyp2f1``
    and free of the ``0 x inf`` of the hypergeometric form at low SNR.
    :func:`nakagami_ber_hypergeometric` keeps the other form for the tests. Valid for real
    ``m >= 0.5``.

    Parameters
    ----------
    mean_snr : array_like
        Mean SNR ``gbar = E[SNR]`` (linear, >= 0).
    m : float
        Nakagami severity parameter.

    Returns
    -------
    ndarray
        BER in [0, 1/2]; exactly 1/2 at ``gbar = 0``.
    """
    gbar = np.maximum(np.asarray(mean_snr, dtype=float), 0.0)
    return 0.5 * special.betainc(m, 0.5, m / (m + gbar))


def nakagami_ber_hypergeometric(mean_snr, m: float):
    """The Gauss-hypergeometric form of eq. (9) (see :func:`nakagami_ber`); for cross-checks.

    Loses accuracy (0 x inf) below about -60 dB mean SNR; use :func:`nakagami_ber`.
    """
    gbar = np.asarray(mean_snr, dtype=float)
    c = np.maximum(gbar, 0.0) / m
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        log_prefactor = (
            0.5 * np.log(c / np.pi) - np.log(2.0) - (m + 0.5) * np.log1p(c) + _log_gamma_ratio(m)
        )
        value = np.exp(log_prefactor) * special.hyp2f1(1.0, m + 0.5, m + 1.0, 1.0 / (1.0 + c))
    return np.where(c > 0, value, 0.5)


def nakagami_ber_derivative(mean_snr, m: float):
    """Exact derivative ``d BER / d gbar`` of :func:`nakagami_ber`.

    With ``SNR = gbar G``, ``G ~ Gamma(m, 1/m)`` and ``d/dx Q(sqrt(2x)) = -e^-x / (2 sqrt(pi x))``,
    ``dBER/dgbar = -Gamma(m+1/2) m^m / (2 sqrt(pi) Gamma(m)) * gbar^(-1/2) (m + gbar)^-(m+1/2)``.

    Parameters
    ----------
    mean_snr : array_like
        Mean SNR (linear, > 0).
    m : float

    Returns
    -------
    ndarray
        Derivative (negative), per unit of linear SNR.
    """
    gbar = np.asarray(mean_snr, dtype=float)
    log_const = float(special.gammaln(m + 0.5) - special.gammaln(m)) + m * np.log(m) - np.log(2.0 * np.sqrt(np.pi))
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        return -np.exp(log_const - 0.5 * np.log(gbar) - (m + 0.5) * np.log(m + gbar))


def nakagami_ber_second_derivative(mean_snr, m: float):
    """Exact second derivative ``d^2 BER / d gbar^2`` (positive: BER is convex in ``gbar``)."""
    gbar = np.asarray(mean_snr, dtype=float)
    first = nakagami_ber_derivative(gbar, m)
    return -first * (0.5 / gbar + (m + 0.5) / (m + gbar))


@lru_cache(maxsize=64)
def gauss_hermite_shadowing(sigma_db: float, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative shadowing factors and weights for ``E_Z[f(10^(sigma Z/10))]``, ``Z ~ N(0,1)``.

    Gauss-Hermite rule ``int e^{-x^2} f(x) dx ~ sum w_k f(x_k)`` with ``Z = sqrt(2) x``
    and weights divided by ``sqrt(pi)`` (they sum to one).

    Returns
    -------
    factors : ndarray
        ``10^(sigma_db sqrt(2) x_k / 10)`` (linear power factors).
    weights : ndarray
        Probability weights, summing to 1.
    """
    x, w = np.polynomial.hermite.hermgauss(int(nodes))
    factors = 10.0 ** (sigma_db * np.sqrt(2.0) * x / 10.0)
    weights = w / np.sqrt(np.pi)
    factors.setflags(write=False)
    weights.setflags(write=False)
    return factors, weights


def expected_ber(mean_snr, params: ChannelParams):
    """Expected BER over Nakagami-m fading and log-normal shadowing (eq. (10)).

    ``E[BER] = E_Z[ BER_m(gbar 10^(sigma Z/10)) ]`` by Gauss-Hermite quadrature with
    ``params.gauss_hermite_nodes`` nodes; ``gbar`` is the mean SNR without shadowing.

    Parameters
    ----------
    mean_snr : array_like
        Mean SNR without shadowing (linear), any shape.
    params : ChannelParams

    Returns
    -------
    ndarray
        Expected BER, same shape as ``mean_snr``.
    """
    factors, weights = gauss_hermite_shadowing(params.shadowing_sigma_db, params.gauss_hermite_nodes)
    gbar = np.asarray(mean_snr, dtype=float)
    return nakagami_ber(gbar[..., None] * factors, params.nakagami_m) @ weights


def expected_ber_derivative(mean_snr, params: ChannelParams):
    """Exact derivative of :func:`expected_ber` with respect to the mean SNR (negative)."""
    factors, weights = gauss_hermite_shadowing(params.shadowing_sigma_db, params.gauss_hermite_nodes)
    gbar = np.asarray(mean_snr, dtype=float)
    return (nakagami_ber_derivative(gbar[..., None] * factors, params.nakagami_m) * factors) @ weights


def sample_instantaneous_snr(mean_snr, params: ChannelParams, rng: np.random.Generator):
    """One draw of the instantaneous SNR of eq. (6): ``gbar * G * 10^(sigma Z/10)``.

    ``G = X^2 / Omega`` with ``X`` Nakagami-m, i.e. ``G ~ Gamma(m, 1/m)`` (unit mean; the spread
    Omega is already inside ``gbar``), and ``Z ~ N(0, 1)``.
    """
    gbar = np.asarray(mean_snr, dtype=float)
    m = params.nakagami_m
    fading = rng.gamma(shape=m, scale=1.0 / m, size=gbar.shape)
    shadowing = 10.0 ** (params.shadowing_sigma_db * rng.standard_normal(gbar.shape) / 10.0)
    return gbar * fading * shadowing


def awgn_ber(snr):
    """BPSK BER without fading, ``Q(sqrt(2 SNR)) = erfc(sqrt(SNR))/2`` (the ``m -> inf`` limit)."""
    return 0.5 * special.erfc(np.sqrt(np.asarray(snr, dtype=float)))


def rayleigh_ber(mean_snr):
    """BPSK BER under Rayleigh fading, ``(1 - sqrt(g/(1+g)))/2`` (the ``m = 1`` case)."""
    g = np.asarray(mean_snr, dtype=float)
    mu = np.sqrt(g / (1.0 + g))
    return 0.5 / ((1.0 + g) * (1.0 + mu))  # = (1 - mu)/2 without cancellation at high SNR


def monte_carlo_ber(mean_snr: float, m: float, samples: int, rng: np.random.Generator) -> float:
    """Monte Carlo estimate of eq. (8), ``E[Q(sqrt(2 SNR))]`` with Gamma-distributed SNR.

    Used by the tests to check the closed form :func:`nakagami_ber` independently.
    """
    snr = rng.gamma(shape=m, scale=mean_snr / m, size=int(samples))
    return float(np.mean(awgn_ber(snr)))


# ---------------------------------------------------------------- Fisher-Snedecor F fading

def _check_fisher_snedecor(m: float, shadowing_m: float) -> None:
    if not m > 0:
        raise ValueError(f"fading severity m must be > 0, got {m}")
    if not shadowing_m > 1:
        raise ValueError(f"shadowing parameter m_s must be > 1 (finite mean SNR), got {shadowing_m}")


def fisher_snedecor_ber(mean_snr, m: float, shadowing_m: float, nodes: int = 1200):
    """Average BPSK BER under Fisher-Snedecor F fading (Yoo et al. 2017, eq. (3) pdf).

    The F-distributed SNR with mean ``gbar`` is ``gbar G S``: ``G ~ Gamma(m, 1/m)`` the
    Nakagami-m power (multipath) and ``S = (m_s - 1) / Y``, ``Y ~ Gamma(m_s, 1)``, an
    inverse-Nakagami shadowing power with unit mean (``m_s > 1``); the ratio of the two gammas
    gives Yoo et al.'s pdf ``m^m ((m_s-1) gbar)^m_s g^(m-1) / (B(m, m_s) (m g + (m_s-1) gbar)^(m+m_s))``.
    Conditioned on ``S`` the BER is the Nakagami-m closed form :func:`nakagami_ber` at mean
    ``gbar S``, so ``BER = E_Y[ nakagami_ber(gbar (m_s - 1)/Y, m) ]``. The expectation is an
    integral over ``z = ln Y`` (log-gamma density ``exp(m_s z - e^z)/Gamma(m_s)``, smooth, with an
    exponential left tail and a double-exponential right tail) by the trapezoid rule on a
    grid covering ``[E z - max(40 sd, 36/m_s), E z + 10 sd + 4]``: the trapezoid rule converges
    geometrically for such integrands, and the grid leaves < 1e-15 of the mass outside.
    :func:`fisher_snedecor_ber_mgf` evaluates the same quantity an independent way (Craig's
    formula on the closed-form MGF) for the tests. As ``m_s -> inf`` it tends to
    :func:`nakagami_ber` (no shadowing).

    Parameters
    ----------
    mean_snr : array_like
        Mean SNR ``gbar`` (linear, >= 0), any shape.
    m : float
        Fading severity (> 0; the paper's Fig. 11: 2).
    shadowing_m : float
        Shadowing parameter ``m_s`` (> 1; smaller = heavier shadowing; the paper's Fig. 11: 1.5).
    nodes : int
        Trapezoid nodes.

    Returns
    -------
    ndarray
        BER in [0, 1/2], same shape as ``mean_snr``.
    """
    _check_fisher_snedecor(m, shadowing_m)
    ms = float(shadowing_m)
    centre = float(special.digamma(ms))
    sd = float(np.sqrt(special.polygamma(1, ms)))
    z = np.linspace(centre - max(40.0 * sd, 36.0 / ms), centre + 10.0 * sd + 4.0, int(nodes))
    log_density = ms * z - np.exp(z) - special.gammaln(ms)
    weights = np.exp(log_density) * (z[1] - z[0])
    weights[[0, -1]] *= 0.5
    gbar = np.maximum(np.asarray(mean_snr, dtype=float), 0.0)
    shadow = (ms - 1.0) * np.exp(-z)
    return nakagami_ber(gbar[..., None] * shadow, m) @ weights


def fisher_snedecor_ber_mgf(mean_snr: float, m: float, shadowing_m: float) -> float:
    """The same average BER by Craig's formula on the MGF (Simon and Alouini, eq. (5.3)); for tests.

    ``M(s) = E[e^(-s g)] = Gamma(m + m_s)/Gamma(m_s) U(m, 1 - m_s, (m_s - 1) gbar s / m)``
    (Tricomi's U; Yoo et al. 2017, eq. (8), derived from ``E_Y[(1 + c/Y)^-m]`` with
    ``c = (m_s - 1) gbar s / m`` and Kummer's transformation), and
    ``BER = (1/pi) int_0^(pi/2) M(1/sin^2 t) dt`` by adaptive quadrature. Scalar only.
    """
    from scipy import integrate

    _check_fisher_snedecor(m, shadowing_m)
    ms = float(shadowing_m)
    gbar = float(mean_snr)
    if gbar <= 0:
        return 0.5
    log_front = float(special.gammaln(m + ms) - special.gammaln(ms))

    def mgf_at(theta: float) -> float:
        c = (ms - 1.0) * gbar / (m * np.sin(theta) ** 2)
        return float(np.exp(log_front) * special.hyperu(m, 1.0 - ms, c))

    value, _ = integrate.quad(mgf_at, 1e-12, np.pi / 2, limit=200, epsabs=1e-13, epsrel=1e-10)
    return value / np.pi


def sample_fisher_snedecor_snr(mean_snr, m: float, shadowing_m: float, rng: np.random.Generator):
    """Draws of the F-distributed SNR ``gbar G (m_s - 1)/Y`` (see :func:`fisher_snedecor_ber`)."""
    _check_fisher_snedecor(m, shadowing_m)
    gbar = np.asarray(mean_snr, dtype=float)
    fading = rng.gamma(shape=m, scale=1.0 / m, size=gbar.shape)
    shadow = (shadowing_m - 1.0) / rng.gamma(shape=shadowing_m, scale=1.0, size=gbar.shape)
    return gbar * fading * shadow
