"""The judge and scorer classify real held-out digits well and noise at chance."""
from __future__ import annotations

import numpy as np

from provisioning.backend.data import load_split


def test_judge_accuracy_on_real_held_out_digits(evaluator):
    split = load_split()
    accuracy = float((evaluator.judge_labels(split.test_images) == split.test_labels).mean())
    assert accuracy >= 0.97
    assert accuracy == evaluator.card["judge_accuracy_held_out"]  # the card reports what it measured


def test_scorer_is_a_different_weaker_classifier(evaluator):
    split = load_split()
    judge = evaluator.judge_labels(split.test_images)
    scorer = evaluator.scorer_probs(split.test_images).argmax(1)
    assert float((scorer == split.test_labels).mean()) >= 0.9
    assert np.any(judge != scorer)  # not the same classifier
    probs = evaluator.scorer_probs(split.test_images[:5])
    assert np.allclose(probs.sum(1), 1.0)
    scores = evaluator.score(split.test_images[:5], split.test_labels[:5])
    assert np.all((scores >= 0) & (scores <= 1))


def test_judge_is_near_chance_on_noise(evaluator):
    rng = np.random.default_rng(5)
    noise = rng.uniform(-1, 1, size=(500, 1, 16, 16)).astype(np.float32)
    labels = rng.integers(0, 10, size=500)
    assert float((evaluator.judge_labels(noise) == labels).mean()) < 0.25
