"""Personality-conditioned evaluators: validation, trait links, the LLM plug and Fig. 10 on renders."""
import numpy as np
import pytest

from market.errors import UserError
from provisioning.denoising.consistency import consistency, rendered_pair
from provisioning.denoising.evaluators import (GA1, GA2, BigFiveEvaluator, ImageProperties, Personality,
                                               ScriptedLanguageModel, make_evaluator, measure_properties,
                                               personality_from_mapping)




def _props(**over):
    base = dict(fidelity=0.9, fusion=0.1, colourfulness=0.5, brightness=0.5, clutter=0.1, artefacts=0.0)
    base.update(over)
    return ImageProperties(**{k: np.array([v]) for k, v in base.items()})


def test_traits_validated():
    with pytest.raises(ValueError, match="neuroticism"):
        Personality(0.1, 0.2, 0.3, 0.4, 1.2)
    with pytest.raises(UserError, match=r"users.toml:user\[2\].openness"):
        personality_from_mapping({"openness": -0.1, "conscientiousness": 0, "extraversion": 0, "agreeableness": 0,
                                  "neuroticism": 0}, "users.toml:user[2]")
    with pytest.raises(UserError, match="unknown evaluator"):
        make_evaluator("gpt-17", GA1)


def test_trait_links_move_scores_the_documented_way():
    fused, clean = _props(fusion=0.9, fidelity=0.6), _props(fusion=0.0, fidelity=0.6)
    agreeable = BigFiveEvaluator(Personality(0.1, 0.5, 0.5, 0.9, 0.5))
    open_minded = BigFiveEvaluator(Personality(0.9, 0.5, 0.5, 0.1, 0.5))
    assert agreeable.mean_qoe(fused)[0] < agreeable.mean_qoe(clean)[0]
    assert open_minded.mean_qoe(fused)[0] > open_minded.mean_qoe(clean)[0]
    colourful, grey = _props(colourfulness=0.9), _props(colourfulness=0.1)
    extravert = BigFiveEvaluator(Personality(0.5, 0.5, 0.95, 0.5, 0.5))
    introvert = BigFiveEvaluator(Personality(0.5, 0.5, 0.05, 0.5, 0.5))
    gain = lambda ev: ev.mean_qoe(colourful)[0] - ev.mean_qoe(grey)[0]
    assert gain(extravert) > gain(introvert)


def test_seeded_and_spread_grows_as_quality_falls():
    ev = BigFiveEvaluator(GA2)
    good, poor = _props(fidelity=1.0, artefacts=0.0), _props(fidelity=0.4, artefacts=0.7)
    many = lambda p: ev.qoe(ImageProperties(**{k: v.repeat(300) for k, v in p.__dict__.items()}), seeds=range(300))
    a, b = many(good), many(poor)
    assert np.array_equal(a, many(good))  # same seeds, same scores
    assert b.std() > 2 * a.std()


def test_language_model_plug_carries_traits_and_image():
    images, own, other = rendered_pair()
    vlm = ScriptedLanguageModel()
    ev = make_evaluator("language-model", GA2, ask=vlm)
    scores = ev.qoe(None, images, [own, own], [other, other], [1, 2])
    assert "Openness: 0.90" in vlm.requests[0] and own in vlm.requests[0]
    brightness = ((images + 1) * 127.5).mean(axis=(1, 2, 3)) / 255.0
    assert scores == pytest.approx(0.9 * brightness, abs=0.011)
    with pytest.raises(UserError, match="not a number"):
        make_evaluator("language-model", GA1, ask=lambda *a: "lovely").qoe(None, images[:1], [own], [other], [0])


def test_properties_read_rendered_images(judge):
    images, own, other = rendered_pair()
    props = measure_properties(judge, images, [own, own], [other, other])
    assert props.fidelity[0] > 0.95 and props.fusion[0] < 0.05 and props.artefacts[0] < 0.05
    assert props.fusion[1] > 0.9 and props.artefacts[1] > 0.9


def test_fig10_consistency_on_rendered_images(judge):
    images, own, other = rendered_pair()
    rows = {(r["personality"], r["image"]): r for r in consistency(judge, images, own, other, seeds=200)}
    assert len(rows) == 4 and all(len(r["scores"]) == 200 for r in rows.values())
    for agent in ("GA1", "GA2"):  # more scatter on the poorer, fused image
        assert rows[(agent, "B")]["sd"] > 3 * rows[(agent, "A")]["sd"]
    # GA1 (agreeable) clearly prefers the untouched image; GA2 (open, low A) likes the fusion more than GA1 does
    assert rows[("GA1", "A")]["mean"] - rows[("GA1", "B")]["mean"] > 0.3
    assert rows[("GA2", "B")]["mean"] - rows[("GA2", "A")]["mean"] > rows[("GA1", "B")]["mean"] - rows[("GA1", "A")]["mean"]
