"""Scene world: caption grammar round trip, parser on free text, deterministic renderer."""
from __future__ import annotations

import numpy as np
import pytest

from provisioning.backend.scenes.render import render
from provisioning.backend.scenes.world import (ATTRIBUTES, VOCABULARY, SceneDescription, caption, drop_attributes,
                                               parse, raw_prompt, sample_description)


def test_caption_parse_round_trip_over_random_drops():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        full = sample_description(rng)
        shown = drop_attributes(full, rng, keep_probability=0.5)
        text = caption(shown)
        parsed = parse(text)
        assert parsed.description == shown, text
        assert parsed.unknown_words == () and parsed.conflicts == ()


def test_every_value_round_trips():
    base = dict(scene="ocean", object="car", colour="red", count="two", size="large", position="left",
                lighting="night", degradation="blur")
    for attr, values in VOCABULARY.items():
        for value in values:
            d = SceneDescription(**{**base, attr: value})
            assert parse(caption(d)).description == d


def test_hand_captions():
    d = SceneDescription(scene="ocean", object="ball", colour="orange", lighting="dusk")
    assert caption(d) == "An ocean at dusk, with an orange ball"
    assert raw_prompt(SceneDescription(scene="city", object="house", colour="red")) == "A city, with a house"
    three = SceneDescription(scene="desert", object="box", count="three", size="small", position="right",
                             degradation="none")
    assert caption(three) == "A desert, with three small boxes on the right, clean"


def test_article_leaves_count_open_and_one_pins_it():
    assert parse("A forest, with a star").description.count is None
    assert parse("A forest, with one star").description.count == "one"


def test_parser_reports_unknown_words_and_conflicts():
    parsed = parse("A majestic grassland at sunset, with two shiny red balls in the center, red and blue")
    assert parsed.description.scene == "grassland" and parsed.description.lighting == "dusk"
    assert parsed.description.position == "centre"
    assert parsed.unknown_words == ("majestic", "shiny")
    assert parsed.conflicts == ("colour: red / blue",)


def test_bad_values_are_rejected():
    with pytest.raises(ValueError):
        SceneDescription(scene="moon")
    with pytest.raises(ValueError):
        caption(SceneDescription(scene="ocean"))


def test_render_is_deterministic_and_varies_with_variant_and_attributes():
    rng = np.random.default_rng(1)
    d = sample_description(rng)
    a, b = render(d, 3), render(d, 3)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render(d, 4))
    for attr in ATTRIBUTES:
        other = next(v for v in VOCABULARY[attr] if v != getattr(d, attr))
        from dataclasses import replace

        assert not np.array_equal(a, render(replace(d, **{attr: other}), 3)), attr


def test_render_needs_a_complete_description():
    with pytest.raises(ValueError, match="unstated"):
        render(SceneDescription(scene="ocean", object="ball"))


def test_device_energy_at_equal_qoe_picks_fewest_device_steps_that_keep_the_rate():
    from provisioning.backend.scenes.experiments import device_energy_at_equal_qoe

    def row(t0, tk, rate, cpu):
        return {"t0": t0, "tk": tk, "ber": 0.0, "accuracy_device2": {"rate": rate},
                "accuracy_device1": {"rate": 0.9}, "device_cpu_s_per_image": cpu}

    rows = [row(0, 20, 0.80, 1.0), row(0, 10, 0.50, 0.5), row(8, 8, 0.70, 0.4), row(8, 12, 0.78, 0.6),
            row(4, 16, 0.82, 0.8)]
    result = device_energy_at_equal_qoe(rows, reference_steps=20, tolerance=0.05)
    assert result["points_keeping_qoe"] == 2
    assert (result["best"]["t0"], result["best"]["tk"]) == (8, 12)
    assert result["best"]["device_steps_saved_share"] == 0.4
    assert abs(result["best"]["device_cpu_saved_share"] - 0.4) < 1e-9
    assert device_energy_at_equal_qoe(rows[:2] + [row(8, 8, 0.1, 0.4)], 20)["best"] is None
    same_prompt = device_energy_at_equal_qoe(rows, 20, device="device1")["best"]  # every point keeps 0.9
    assert (same_prompt["t0"], same_prompt["tk"]) == (8, 8)
    assert same_prompt["saved_vs_cheapest_device_only"] == 0.2  # device-only reaches 0.9 in 10 steps
