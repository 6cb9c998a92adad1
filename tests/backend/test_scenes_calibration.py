"""The scene models as ASP profiles: the same calibration, market and pipeline as the digits.

A scene model is measured by ``measurement.measure_groups`` through ``scenes.measure.SceneBackend``
(request ``i`` asks for prompt ``i mod 20`` of the seeded workload; the judge keeps the best trial
and checks the whole intent); ``calibrate`` turns it into a profile; ``incentive run`` runs the
market <-> provisioning loop on it. The shipped scene weights are small and the samples tiny here:
these tests check the plumbing and the judge's verdict on renders, not the models' accuracy.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from incentive.cli import main
from market.errors import UserError
from provisioning.backend.calibration import CalibrateConfig, calibrate
from provisioning.backend.measurement import (RequestGroup, is_measured_model, load_measured_model, measure_groups,
                                              split_model_spec)
from provisioning.backend.scenes.measure import (CONTENT_ATTRIBUTES, SceneEvaluator, WORKLOAD_PROMPTS, asp_workload,
                                                 decode_reading, reading_code)

ROOT = Path(__file__).resolve().parents[2]
BITS = 32 * 32 * 3 * 8


@pytest.fixture(scope="module")
def scenes_small():
    """scenes-small as an ASP configuration at 2 denoising steps (fast)."""
    return load_measured_model("scenes-small@2", device="cpu")


def test_model_specs_name_shipped_models_and_steps():
    assert split_model_spec("scenes-large@10") == ("scenes-large", 10)
    assert split_model_spec("digits-small") == ("digits-small", None)
    with pytest.raises(UserError, match="1..1000"):
        split_model_spec("scenes-large@0")
    assert is_measured_model("scenes-small") and is_measured_model("scenes-large@10") and is_measured_model("digits-large@5")
    assert not is_measured_model("scenes-huge") and not is_measured_model("scenes-large@x")


def test_workload_is_fixed_and_fully_specified():
    first, again = asp_workload(), asp_workload()
    assert len(first) == WORKLOAD_PROMPTS and [r.prompt for r in first] == [r.prompt for r in again]
    assert len({r.prompt for r in first}) == WORKLOAD_PROMPTS
    for request in first:
        assert set(request.intent) == set(CONTENT_ATTRIBUTES) and request.stated["degradation"] == "none"
        assert request.prompt.endswith(", clean")


def test_reading_code_round_trips():
    rng = np.random.default_rng(0)
    from provisioning.backend.scenes.judge import HEAD_SIZES

    indices = np.stack([rng.integers(0, k, size=500) for k in HEAD_SIZES], axis=1)
    assert np.array_equal(decode_reading(reading_code(indices)), indices)


def test_scene_verdict_and_score_on_renders_of_the_workload():
    """The evaluator the measurement uses: renders of a request's description are judged correct
    (the judge reads renders at >= 0.93 per attribute) and rendered another request's description
    they are not; the selection score prefers the render of the request's own description."""
    from provisioning.backend.scenes.judge import load_judge
    from provisioning.backend.scenes.render import render, to_model_space
    from provisioning.backend.scenes.world import SceneDescription

    workload = asp_workload()
    evaluator = SceneEvaluator(load_judge("cpu"), workload)
    descriptions = [SceneDescription(**r.stated) for r in workload]
    images = to_model_space(np.stack([render(d, variant=1000 + i) for i, d in enumerate(descriptions)]))
    labels = np.arange(len(workload))
    _, right = evaluator.verdict(images, labels)
    _, wrong = evaluator.verdict(images, np.roll(labels, 1))
    assert right.mean() >= 0.7 and wrong.mean() <= 0.1, (right.mean(), wrong.mean())
    own, other = evaluator.score(images, labels), evaluator.score(images, np.roll(labels, 1))
    assert np.all((own >= 0) & (own <= 1)) and (own > other).mean() >= 0.9


def test_scene_model_through_measure_groups_best_of_n_and_channel(scenes_small):
    """One measurement path: tokens, bits, the link's bit flips and the judge's best-of-N choice."""
    one, two = measure_groups(scenes_small, [RequestGroup(1, 3, 5, (0.0, 0.02)), RequestGroup(2, 3, 5, (0.0,))])
    assert one.tokens == 64 and one.bits_per_output == BITS and one.steps == 2
    assert one.labels == [0, 1, 2] and one.outcomes[0].bits_flipped == 0
    assert one.outcomes[1].bits_flipped == pytest.approx(0.02 * 3 * BITS, rel=0.1)
    # request i's first trial starts from the same noise in both groups: keeping the best of two
    # (by the judge's score of the prompt) never scores below the single trial
    assert np.all(np.asarray(two.outcomes[0].quality) >= np.asarray(one.outcomes[0].quality) - 1e-4)
    again = measure_groups(scenes_small, [RequestGroup(1, 3, 5, (0.0, 0.02))])[0]
    assert again.outcomes[1].judged == one.outcomes[1].judged  # seeded: the same requests, flips and verdicts


def test_scene_model_calibrates_to_an_asp_profile(tmp_path, scenes_small):
    market_scenario = pytest.importorskip("market.scenario")
    cfg = CalibrateConfig(models=["scenes-small@2"], steps_grid=[1], trials_grid=[1, 2], ber_grid=[0.0, 0.05],
                          samples=3, seed=0)
    result = calibrate(cfg, tmp_path, log=lambda m: None, loaded={"scenes-small@2": scenes_small}, plots=False)
    profile = result["profiles"]["scenes-small@2"]
    assert profile["max_tokens"] == 64 and profile["bits_per_output"] == BITS and profile["steps"] == 2
    assert 0 <= profile["accuracy"] <= 1 and profile["seconds_per_token"] > 0 and profile["samples"] == 3
    table = result["accuracy"]["scenes-small@2"]
    assert table["trials"] == [1, 2] and table["ber"] == [0.0, 0.05] and len(table["accuracy"]) == 2
    quality = result["quality"]["scenes-small@2"]
    assert sorted(quality["prompts"]) == [0, 1, 2] and "judge" in quality["score"]  # ordered by difficulty
    assert all(q <= 0 for q in quality["mean_log_score"])
    scenario = market_scenario.load_scenario(tmp_path / "scenario.toml")
    asp = next(a for a in scenario.asps if a.model == "scenes-small@2")
    assert asp.accuracy == pytest.approx(profile["accuracy"]) and asp.max_tokens == 64
    assert all(m.payload_bits == BITS for m in scenario.mus if m.asp == asp.name)


def _scene_scenario(tmp_path, model: str) -> Path:
    path = tmp_path / "tiny-scenes.toml"
    mus = "".join(f"""
[[mu]]
name = "u{i}"
asp = "edge"
tokens_requested = 80.0
deadline_s = {2.0 + i}
payload_bits = 24576.0
value_per_qoe = 5.0
reward_min = 0.1
reward_max = 4.0
spectral_efficiency = {2.0 + i}

[mu.weights]
accuracy = 0.5
tokens = 0.2
timeliness = 0.3
""" for i in range(2))
    path.write_text(f"""
[market]
version = 1
name = "tiny-scenes"

[[asp]]
name = "edge"
accuracy = 0.5
seconds_per_token = 0.003
max_tokens = 64.0
compute_capacity = 2.0
bandwidth_capacity = 1.0e6
compute_cost = 0.01
bandwidth_cost = 1.0e-8
model = "{model}"
{mus}
[provisioning]
max_trials = 2
""")
    return path


def test_incentive_run_calibrates_and_runs_a_tiny_scene_market(tmp_path):
    """`incentive run --calibrate` on a scene ASP: calibration, the priced-trials loop, the measured users."""
    scenario, out = _scene_scenario(tmp_path, "scenes-small@2"), tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(out), "--calibrate", "--calibration-samples", "2",
                 "--samples", "2", "--provision", "oracle", "--no-progress"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["calibrated"] is True and result["converged"] in (True, False) and result["rounds"]
    profile = result["calibration"]["profiles"]["scenes-small@2"]
    assert profile["max_tokens"] == 64 and profile["steps"] == 2
    for user in result["users"]:
        assert user["model"] == "scenes-small@2" and user["measurement"]["tokens"] == 64
        assert user["measurement"]["bits_per_output"] == BITS and user["measurement"]["samples"] == 2
        assert user["measured"]["tokens"] == 64 and user["qoe_gap"] is not None
    assert np.isfinite(result["summary"]["mean_abs_qoe_gap"])


@pytest.mark.parametrize("model", ["scenes-huge", "scenes-large@0"])
def test_bad_scene_model_in_a_scenario_is_one_line_exit_2(tmp_path, capsys, model):
    scenario, out = _scene_scenario(tmp_path, model), tmp_path / "run"
    assert main(["run", str(scenario), "--out", str(out), "--quick", "--provision", "oracle"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and model in err and "asp[0].model" in err and str(scenario) in err
    assert "scenes-large" in err and not out.exists()


def test_backend_calibrate_rejects_an_unknown_model_before_writing(tmp_path, capsys):
    out = tmp_path / "cal"
    assert main(["backend", "calibrate", "--models", "scenes-small", "scenes-huge", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--models" in err and "scenes-huge" in err and not out.exists()


def test_shipped_scenes_scenario_is_calibrated():
    """scenarios/scenes.toml carries its measured tables (the command in its header) for its three ASPs."""
    from incentive.pipeline import PipelineConfig, check_inputs

    inputs = check_inputs(ROOT / "scenarios" / "scenes.toml", PipelineConfig(provision="oracle"))
    assert inputs.uncalibrated == []
    assert sorted(set(inputs.models.values())) == ["scenes-large", "scenes-large@10", "scenes-small"]
    assert all(int(a.max_tokens) == 64 for a in inputs.scenario.asps)
