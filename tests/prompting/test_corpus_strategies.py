"""Prompt corpus (section IV-A) and Table II strategies."""
import numpy as np
import pytest

from market.errors import UserError
from provisioning.backend.scenes.world import OBJECTS, SCENES, parse
from provisioning.prompting.corpus import (ASPECTS, TYPICAL, CallablePromptOptimizer, PromptOptimizer,
                                           WorldPromptOptimizer, instructions)
from provisioning.prompting.strategies import (TABLE_II, Strategy, apply_strategy, get_strategy, register_strategy,
                                               strategies)


def test_world_corpus_is_seeded_and_covers_the_six_aspects():
    opt = WorldPromptOptimizer(phrasings=3)
    assert isinstance(opt, PromptOptimizer)
    a, b = opt.corpus("A desert, with a car", seed=1), opt.corpus("A desert, with a car", seed=1)
    assert a == b
    assert set(a.items) == set(ASPECTS) and len(a) == 18
    assert any(opt.corpus("A desert, with a car", seed=s) != a for s in range(2, 6))


def test_world_corpus_mixes_helpful_and_misleading_phrasings():
    opt = WorldPromptOptimizer(helpful_rate=0.6)
    top_typical, envs_wrong = [], []
    for scene in SCENES:
        for obj in OBJECTS:
            for seed in range(3):
                c = opt.corpus(f"A {scene}, with a {obj}", seed=seed)
                top_typical.append(c.top("object").attributes["colour"] == TYPICAL["colour"][obj])
                envs_wrong.append(c.top("environment").attributes["scene"] != scene)
                assert all(not it.attributes for it in c.items["mood"])  # moods: words the world cannot check
    assert 0.45 < np.mean(top_typical) < 0.75
    assert 0.25 < np.mean(envs_wrong) < 0.55


def test_instructions_follow_the_authors_structure():
    text = instructions("A grassland, with a tree")
    for slot in ("writer", "Concept", "Subject", "Environment", "Mood", "Lighting", "quality-booster", "negative"):
        assert slot in text
    with pytest.raises(UserError):
        instructions("x", booster_terms=12)
    negatives = WorldPromptOptimizer().corpus("A city, with a house").items["negative"]
    assert all(18 <= len(it.text.split(",")) <= 20 for it in negatives)
    boosters = WorldPromptOptimizer().corpus("A city, with a house").items["booster"]
    assert all(5 <= len(it.text.split(",")) <= 10 for it in boosters)


def test_callable_optimizer_with_a_test_double():
    seen = []

    def fake_llm(prompt: str) -> str:
        seen.append(prompt)
        return "Object description: a red ball\nlighting: at night\nchatter without a colon\nnegative effects: blurry"

    corpus = CallablePromptOptimizer(fake_llm, name="fake").corpus("A forest, with a ball")
    assert "A forest, with a ball" in seen[0]
    assert corpus.top("object").attributes == {"colour": "red", "object": "ball"}
    assert corpus.top("lighting").attributes == {"lighting": "night"}
    assert corpus.top("mood") is None
    e = apply_strategy(corpus, get_strategy("object+lighting"))
    assert parse(e.prompt).description.specified() == {"scene": "forest", "object": "ball", "colour": "red",
                                                       "lighting": "night"}
    with pytest.raises(UserError, match="no 'aspect: phrasing' line"):
        CallablePromptOptimizer(lambda p: "nothing useful").corpus("A forest, with a ball")


def test_table_ii_strategies():
    assert TABLE_II == tuple(s.name for s in strategies()[:7])
    corpus = WorldPromptOptimizer().corpus("An ocean, with a star", seed=3)
    raw = apply_strategy(corpus, get_strategy(0))
    assert raw.prompt == "An ocean, with a star" and raw.negative_prompt == ""
    obj = apply_strategy(corpus, get_strategy(1))
    assert parse(obj.prompt).description.colour == corpus.top("object").attributes["colour"]
    neg = apply_strategy(corpus, get_strategy(6))
    assert neg.prompt == obj.prompt and neg.negative_prompt == corpus.top("negative").text
    light = apply_strategy(corpus, get_strategy(4))
    assert parse(light.prompt).description.lighting == corpus.top("lighting").attributes["lighting"]
    assert "atmosphere" in apply_strategy(corpus, get_strategy(3)).prompt


def test_user_defined_strategy_registry():
    custom = register_strategy(Strategy("test-lighting-only", ("lighting",)), replace=True)
    assert get_strategy("test-lighting-only") is custom and custom in strategies()
    with pytest.raises(UserError):
        register_strategy(Strategy("test-lighting-only", ("lighting",)))
    with pytest.raises(UserError):
        Strategy("bad", ("colourfulness",))
    with pytest.raises(UserError):
        get_strategy(999)
