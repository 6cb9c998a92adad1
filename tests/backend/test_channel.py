"""The noisy link flips the expected share of bits; quantisation round trips."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning.backend.channel import (dequantise_unit, flip_bits, quantise_unit, transmit_images,
                                          transmit_latent)


@pytest.mark.parametrize("ber", [0.001, 0.01, 0.05, 0.2, 0.5])
def test_flips_expected_share_of_bits(ber):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=200_000, dtype=np.uint8)
    received, flipped = flip_bits(data, ber, rng=rng)
    n_bits = data.size * 8
    diff = int(np.unpackbits(data ^ received).sum())
    assert diff == flipped  # the count reported is the count that differs
    sd = np.sqrt(n_bits * ber * (1 - ber))
    assert abs(flipped - n_bits * ber) < 5 * sd


def test_zero_and_one_ber():
    data = np.arange(256, dtype=np.uint8)
    same, n0 = flip_bits(data, 0.0)
    assert n0 == 0 and np.array_equal(same, data)
    inverted, n1 = flip_bits(data, 1.0, rng=np.random.default_rng(0))
    assert n1 == 256 * 8 and np.array_equal(inverted, ~data)


def test_common_random_numbers_nest_flips():
    data = np.zeros(1000, dtype=np.uint8)
    u = np.random.default_rng(3).random(8000)
    low, _ = flip_bits(data, 0.01, uniforms=u)
    high, _ = flip_bits(data, 0.1, uniforms=u)
    assert np.all((np.unpackbits(low) & ~np.unpackbits(high) & 1) == 0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_rejects_bad_ber(bad):
    with pytest.raises(ValueError, match="ber"):
        flip_bits(np.zeros(4, dtype=np.uint8), bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=1, max_size=64))
def test_quantisation_round_trip_within_half_step(values):
    x = np.asarray(values)
    back = dequantise_unit(quantise_unit(x, -1.0, 1.0), -1.0, 1.0)
    assert np.all(np.abs(back - x) <= 1.0 / 255 + 1e-6)


def test_images_and_latents_keep_shape_and_count_bits():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(3, 1, 16, 16)).astype(np.float32)
    out = transmit_images(images, 0.05, rng=rng)
    assert out.values.shape == images.shape and out.bits == 3 * 256 * 8
    assert 0 < out.bits_flipped < out.bits
    latent = rng.normal(size=(2, 1, 16, 16)).astype(np.float32) * 10
    clean = transmit_latent(latent, 0.0)
    assert np.all(np.abs(clean.values) <= 4.0 + 1e-6)  # clipped to the link's range
    inside = np.abs(latent) < 4
    assert np.all(np.abs(clean.values - latent)[inside] <= 8 / 255 / 2 + 1e-5)
