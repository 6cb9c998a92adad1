"""measure(): fields, intervals, BER sweeps on the same images, input validation, the accuracy goal."""
from __future__ import annotations

import numpy as np
import pytest

from market.errors import UserError
from provisioning.backend.measurement import MeasureConfig, measure, quality_scores


def test_measure_fields_are_consistent(small_model, evaluator):
    res = measure(small_model, MeasureConfig(steps=3, trials=2, samples=6, ber=0.02, link_rate_bps=1e5),
                  evaluator=evaluator)
    assert 0 <= res.accuracy <= 1 and res.accuracy_ci95[0] <= res.accuracy <= res.accuracy_ci95[1]
    assert res.tokens == 16 and res.bits == 2 * 16 * 16 * 8
    assert res.transmission_s == pytest.approx(res.bits / 1e5)
    assert res.latency_s == pytest.approx(res.compute_s + res.transmission_s)
    assert res.latency_ci95[0] <= res.latency_s <= res.latency_ci95[1]
    assert res.seconds_per_token == pytest.approx(res.compute_s / (2 * 16))  # per generated token
    assert res.cpu_seconds_per_token == pytest.approx(res.cpu_s / (2 * 16))
    assert res.device == "cpu" and res.config["steps"] == 3
    assert len(res.per_request["correct"]) == 6 and res.accuracy == np.mean(res.per_request["correct"])


def test_ber_list_reuses_the_images(small_model, evaluator):
    rows = measure(small_model, MeasureConfig(steps=2, samples=4), bers=[0.0, 0.3], evaluator=evaluator)
    assert rows[0].bits_flipped == 0 and rows[0].accuracy == rows[0].accuracy_no_channel
    assert rows[1].observed_ber == pytest.approx(0.3, abs=0.05)
    assert rows[0].per_request["latency_s"] == rows[1].per_request["latency_s"]


def test_same_seed_same_measurement(small_model, evaluator):
    cfg = MeasureConfig(steps=2, samples=3, ber=0.05)
    a = measure(small_model, cfg, evaluator=evaluator)
    b = measure(small_model, cfg, evaluator=evaluator)
    assert a.per_request["quality"] == b.per_request["quality"] and a.bits_flipped == b.bits_flipped


@pytest.mark.parametrize("field,value", [("ber", 2.0), ("ber", float("nan")), ("trials", 0), ("samples", 0),
                                         ("steps", 0), ("link_rate_bps", -1.0)])
def test_bad_settings_name_the_field(small_model, field, value):
    cfg = MeasureConfig(steps=2, samples=2)
    setattr(cfg, field, value)
    with pytest.raises(UserError, match=field):
        measure(small_model, cfg)


def test_quality_scores_shape_and_range(small_model, evaluator):
    q = quality_scores(small_model, [1, 4], trials=3, steps=2, ber=0.01, evaluator=evaluator)
    assert q.shape == (2, 3) and np.all((q >= 0) & (q <= 1))


@pytest.mark.slow
def test_default_model_meets_accuracy_goal():
    from provisioning.backend.models import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL, device="cpu")
    res = measure(model, MeasureConfig(samples=100))
    assert res.accuracy >= 0.85


def test_a_request_does_not_depend_on_the_batch_it_shares(small_model, evaluator):
    """measure_groups packs requests of several groups together; each request starts from its own
    seeded noise and flips its bits with its own uniforms, so a group measured alone or packed with
    another gives the same judgements (and the channel the same flipped bits)."""
    from provisioning.backend.measurement import RequestGroup, measure_groups

    mine = RequestGroup(trials=2, samples=5, seed=11, bers=(0.0, 0.05))
    other = RequestGroup(trials=3, samples=4, seed=12, bers=(0.02,))
    (alone,) = measure_groups(small_model, [mine], steps=2, evaluator=evaluator, warmup=False)
    packed = measure_groups(small_model, [other, mine], steps=2, evaluator=evaluator, batch_images=8, warmup=False)
    assert packed[1].labels == alone.labels
    for a, b in zip(alone.outcomes, packed[1].outcomes):
        assert a.judged == b.judged and a.bits_flipped == b.bits_flipped
        np.testing.assert_allclose(a.quality, b.quality, rtol=1e-4, atol=1e-6)
    assert packed[0].outcomes[0].bits_flipped > 0 and len(packed[0].compute_s) == 4
