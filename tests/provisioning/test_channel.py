"""Channel model: closed-form Nakagami-m BER against numerical integration, Monte Carlo and limits."""
import numpy as np
import pytest
from scipy import integrate, special, stats

from provisioning.channel import (
    ChannelParams,
    awgn_ber,
    expected_ber,
    expected_ber_derivative,
    mean_snr_per_watt,
    monte_carlo_ber,
    nakagami_ber,
    nakagami_ber_derivative,
    nakagami_ber_hypergeometric,
    nakagami_ber_second_derivative,
    rayleigh_ber,
    sample_instantaneous_snr,
)

M_VALUES = [0.5, 1.0, 1.7, 2.0, 3.5, 8.0]
SNR_VALUES = [1e-3, 0.1, 1.0, 3.0, 10.0, 100.0, 1e4]


def ber_by_quadrature(mean_snr, m):
    """Eq. (8): int Q(sqrt(2 g)) f_SNR(g) dg with Gamma-distributed SNR (g = u^2 removes the
    integrable singularity of the density at 0 when m < 1)."""
    f = lambda u: 0.5 * special.erfc(u) * stats.gamma.pdf(u * u, m, scale=mean_snr / m) * 2.0 * u
    value, _ = integrate.quad(f, 0.0, np.inf, epsabs=0.0, epsrel=1e-11, limit=400)
    return value


@pytest.mark.parametrize("m", M_VALUES)
def test_closed_form_matches_integral_of_eq8(m):
    for g in SNR_VALUES:
        closed = float(nakagami_ber(g, m))
        numeric = ber_by_quadrature(g, m)
        assert closed == pytest.approx(numeric, rel=1e-7, abs=1e-14), (m, g)


@pytest.mark.parametrize("m", M_VALUES)
def test_incomplete_beta_equals_hypergeometric_form(m):
    g = np.logspace(-3, 4, 30)
    np.testing.assert_allclose(nakagami_ber(g, m), nakagami_ber_hypergeometric(g, m), rtol=1e-9)


@pytest.mark.parametrize("m,g", [(1.0, 2.0), (2.0, 5.0), (3.5, 1.0), (0.7, 20.0)])
def test_closed_form_matches_monte_carlo(m, g):
    rng = np.random.default_rng(7)
    samples = 400_000
    estimate = monte_carlo_ber(g, m, samples, rng)
    # standard error of the mean of Q(sqrt(2 SNR)) (bounded by 1/2)
    snr = rng.gamma(m, g / m, size=samples)
    standard_error = np.std(awgn_ber(snr)) / np.sqrt(samples)
    assert abs(estimate - float(nakagami_ber(g, m))) < 5 * standard_error


def test_rayleigh_limit_at_m_equal_one():
    g = np.logspace(-3, 5, 50)
    np.testing.assert_allclose(nakagami_ber(g, 1.0), rayleigh_ber(g), rtol=1e-12)


def test_awgn_limit_as_m_grows():
    g = 4.0
    errors = [abs(float(nakagami_ber(g, m)) / float(awgn_ber(g)) - 1.0) for m in (2.0, 10.0, 100.0, 2000.0)]
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 0.02


def test_ber_endpoints_and_monotonicity():
    assert float(nakagami_ber(0.0, 2.0)) == 0.5
    g = np.logspace(-4, 6, 200)
    for m in M_VALUES:
        values = nakagami_ber(g, m)
        assert np.all(np.diff(values) < 0)
        assert np.all((values > 0) & (values < 0.5))


@pytest.mark.parametrize("m", M_VALUES)
def test_exact_derivatives(m):
    g = np.logspace(-2, 3, 15)
    h = 1e-6 * g
    finite = (nakagami_ber(g + h, m) - nakagami_ber(g - h, m)) / (2 * h)
    np.testing.assert_allclose(nakagami_ber_derivative(g, m), finite, rtol=1e-5)
    finite2 = (nakagami_ber_derivative(g + h, m) - nakagami_ber_derivative(g - h, m)) / (2 * h)
    np.testing.assert_allclose(nakagami_ber_second_derivative(g, m), finite2, rtol=1e-5)
    assert np.all(nakagami_ber_second_derivative(g, m) > 0)  # convex in the mean SNR


def test_expected_ber_over_shadowing_matches_quadrature_over_z():
    params = ChannelParams(nakagami_m=2.0, shadowing_sigma_db=6.0, gauss_hermite_nodes=40)
    for g in (0.5, 5.0, 50.0, 500.0):
        f = lambda z: float(nakagami_ber(g * 10 ** (6.0 * z / 10), 2.0)) * stats.norm.pdf(z)
        reference, _ = integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-11, limit=400)
        assert float(expected_ber(g, params)) == pytest.approx(reference, rel=1e-6)


def test_expected_ber_matches_monte_carlo_of_eq6():
    params = ChannelParams(nakagami_m=1.5, shadowing_sigma_db=4.0)
    rng = np.random.default_rng(11)
    gbar = np.full(300_000, 8.0)
    ber = awgn_ber(sample_instantaneous_snr(gbar, params, rng))
    standard_error = ber.std() / np.sqrt(ber.size)
    assert abs(ber.mean() - float(expected_ber(8.0, params))) < 5 * standard_error


def test_no_shadowing_reduces_to_closed_form_and_derivative_is_exact():
    params = ChannelParams(nakagami_m=2.0, shadowing_sigma_db=0.0, gauss_hermite_nodes=5)
    g = np.logspace(-1, 3, 9)
    np.testing.assert_allclose(expected_ber(g, params), nakagami_ber(g, 2.0), rtol=1e-12)
    shadowed = ChannelParams(nakagami_m=2.0, shadowing_sigma_db=5.0)
    h = 1e-6 * g
    finite = (expected_ber(g + h, shadowed) - expected_ber(g - h, shadowed)) / (2 * h)
    np.testing.assert_allclose(expected_ber_derivative(g, shadowed), finite, rtol=1e-5)


def test_mean_snr_per_watt_hand_value():
    params = ChannelParams(nakagami_omega=2.0, path_loss_exponent=3.0, path_gain_at_1m_db=-40.0, noise_power_w=1e-12)
    # 2 * 1e-4 * 100^-3 / 1e-12 = 200
    assert float(mean_snr_per_watt(100.0, params)) == pytest.approx(200.0, rel=1e-12)
