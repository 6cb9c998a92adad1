"""Scene judge and generators as shipped: judge accuracy on fresh renders, seeded determinism,
CPU-only generation, measurement fields, and the ``incentive backend measure`` front door."""
from __future__ import annotations

import json

import numpy as np
import pytest

from incentive.cli import main
from provisioning.backend.scenes.generator import generate_scenes, load_scene_model
from provisioning.backend.scenes.judge import heldout_accuracy, load_judge, render_set
from provisioning.backend.scenes.measure import SceneMeasureConfig, measure_scene


@pytest.fixture(scope="module")
def judge():
    return load_judge("cpu")


@pytest.fixture(scope="module")
def small():
    return load_scene_model("scenes-small", device="cpu")


def test_shipped_judge_reads_fresh_renders(judge):
    # seed 77 renders were used neither for training (seed 0) nor for the card's held-out set (seed 1000)
    images, attributes = render_set(400, seed=77)
    accuracy = heldout_accuracy(judge, images, attributes)
    assert min(accuracy.values()) >= 0.93, accuracy
    for attribute, card_value in judge.card["heldout_accuracy"].items():  # the card's figures hold on new renders
        assert abs(accuracy[attribute] - card_value) <= 0.04, (attribute, accuracy[attribute], card_value)


def test_degradation_score_separates_clean_from_degraded(judge):
    images, attributes = render_set(300, seed=78)
    score = judge.read(images).degradation_score
    clean = attributes[:, -1] == 0
    assert score[clean].mean() < 0.1 < 0.9 < score[~clean].mean()


def test_generation_is_deterministic_for_a_seed_on_cpu(small):
    prompts = ["A snowfield at night, with two red cars", "An ocean, with a star"]
    a, _ = generate_scenes(small, prompts, steps=3, seed=5)
    b, _ = generate_scenes(small, prompts, steps=3, seed=5)
    c, _ = generate_scenes(small, prompts, steps=3, seed=6)
    assert a.shape == (2, 3, 32, 32) and small.device == "cpu"
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def test_measure_scene_reports_intent_attributes(small, judge):
    cfg = SceneMeasureConfig(prompt="A desert, with a blue ball", intent="A desert at night, with a blue ball",
                             samples=3, trials=2, steps=2, ber=0.01)
    res = measure_scene(small, judge, cfg).to_dict()
    assert set(res["attribute_accuracy"]) == {"scene", "object", "colour", "lighting"}
    assert res["tokens"] == 64 and res["bits"] == 2 * 32 * 32 * 3 * 8
    assert 0 <= res["accuracy"] <= min(res["attribute_accuracy"].values())
    assert res["bits_flipped"] > 0 and res["device"] == "cpu"
    assert "lighting" not in res["unspecified_distribution"] and "count" in res["unspecified_distribution"]


def test_cli_measures_a_scene_model(tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["backend", "measure", "--model", "scenes-small", "--prompt", "A city, with a red car",
                 "--samples", "2", "--steps", "2", "--seed", "1", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("accuracy", "attribute_accuracy", "tokens", "latency_s", "device", "model"):
        assert key in report
    assert report["model"] == "scenes-small"


def test_cli_unknown_model_and_empty_prompt_exit_2(capsys):
    assert main(["backend", "measure", "--model", "scenes-huge", "--prompt", "A city, with a car"]) == 2
    err = capsys.readouterr().err
    assert "scenes-huge" in err and len(err.strip().splitlines()) == 1
    assert main(["backend", "measure", "--model", "scenes-small", "--prompt", "  "]) == 2
    err = capsys.readouterr().err
    assert "prompt" in err and len(err.strip().splitlines()) == 1


def test_cli_warns_about_unknown_intent_words(capsys):
    code = main(["backend", "measure", "--model", "scenes-small", "--prompt", "A forest, with a tree",
                 "--intent", "A gloomy forest, with a purple tree", "--samples", "1", "--steps", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "gloomy" in err and "purple" not in err.split("check these intent words:")[1]


def test_cli_lists_models(capsys):
    assert main(["backend", "measure", "--list-models"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"scenes-small", "scenes-large", "digits-large"} <= names
