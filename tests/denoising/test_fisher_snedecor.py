"""Fisher-Snedecor F fading BER: quadrature vs the MGF form, Monte Carlo, and the Nakagami limit."""
import numpy as np
import pytest

from provisioning.channel import (awgn_ber, fisher_snedecor_ber, fisher_snedecor_ber_mgf, nakagami_ber,
                                  sample_fisher_snedecor_snr)


@pytest.mark.parametrize("m, ms", [(2.0, 1.5), (1.0, 3.0), (4.5, 10.0)])
@pytest.mark.parametrize("snr", [0.05, 1.0, 10.0, 300.0])
def test_quadrature_matches_mgf_closed_form(m, ms, snr):
    assert float(fisher_snedecor_ber(snr, m, ms)) == pytest.approx(fisher_snedecor_ber_mgf(snr, m, ms), rel=1e-8)


@pytest.mark.parametrize("snr", [0.3, 3.0, 30.0])
def test_matches_monte_carlo(snr):
    rng = np.random.default_rng(7)
    draws = awgn_ber(sample_fisher_snedecor_snr(np.full(200_000, snr), 2.0, 1.5, rng))
    standard_error = draws.std() / np.sqrt(draws.size)
    assert abs(float(fisher_snedecor_ber(snr, 2.0, 1.5)) - draws.mean()) < 5 * standard_error


def test_tends_to_nakagami_as_shadowing_vanishes():
    snr = np.array([0.5, 5.0, 50.0])
    gaps = [np.max(np.abs(fisher_snedecor_ber(snr, 2.0, ms) / nakagami_ber(snr, 2.0) - 1)) for ms in (5, 50, 500, 5000)]
    assert gaps[-1] < 2e-3
    assert all(a > b for a, b in zip(gaps, gaps[1:]))  # monotone approach, about 1/m_s


def test_shape_bounds_and_monotone():
    snr = np.logspace(-3, 4, 30).reshape(5, 6)
    ber = fisher_snedecor_ber(snr, 2.0, 1.5)
    assert ber.shape == snr.shape
    flat = ber.ravel()
    assert np.all(np.diff(flat) < 0) and flat[0] < 0.5 and flat[-1] > 0
    assert float(fisher_snedecor_ber(0.0, 2.0, 1.5)) == pytest.approx(0.5)
    # shadowing hurts: F fading is worse than Nakagami-m with the same mean at high SNR
    assert float(fisher_snedecor_ber(100.0, 2.0, 1.5)) > 5 * float(nakagami_ber(100.0, 2.0))


def test_rejects_infinite_mean_shadowing():
    with pytest.raises(ValueError, match="m_s"):
        fisher_snedecor_ber(1.0, 2.0, 1.0)
