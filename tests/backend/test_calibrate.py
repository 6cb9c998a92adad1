"""Calibration writes a valid market scenario, quality tables and plots, and resumes."""
from __future__ import annotations

import json

import pytest

from provisioning.backend.calibration import CalibrateConfig, calibrate


def test_calibration_output_loads_as_a_market_scenario(tmp_path):
    market_scenario = pytest.importorskip("market.scenario")
    cfg = CalibrateConfig(models=["digits-small"], steps_grid=[2], trials_grid=[1, 2], ber_grid=[0.0, 0.2],
                          samples=4, seed=1)
    result = calibrate(cfg, tmp_path, log=lambda m: None)
    scenario = market_scenario.load_scenario(tmp_path / "scenario.toml")
    asp = next(a for a in scenario.asps if a.model == "digits-small")
    prof = result["profiles"]["digits-small"]
    assert asp.accuracy == pytest.approx(prof["accuracy"]) and asp.seconds_per_token == pytest.approx(prof["seconds_per_token"])
    assert asp.max_tokens == 16
    quality = json.loads((tmp_path / "quality.json").read_text())["digits-small"]
    assert len(quality["prompts"]) == 4  # samples 4 -> digits 0..3
    assert all(b > a for a, b in zip(quality["difficulty"], quality["difficulty"][1:]))
    for name in ("accuracy_vs_steps.png", "accuracy_vs_ber.png", "latency_vs_steps.png"):
        assert (tmp_path / name).stat().st_size > 1000
    lines = (tmp_path / "measurements.jsonl").read_text().splitlines()
    # resume: nothing is measured again
    calibrate(cfg, tmp_path, log=lambda m: pytest.fail("re-measured: " + m))
    assert (tmp_path / "measurements.jsonl").read_text().splitlines() == lines


def test_base_scenario_gets_measured_profile(tmp_path):
    market_scenario = pytest.importorskip("market.scenario")
    from provisioning.backend.calibration import write_calibrated_scenario

    profiles = {"digits-small": {"accuracy": 0.5, "seconds_per_token": 0.01, "max_tokens": 16, "bits_per_output": 2048}}
    first = write_calibrated_scenario(profiles, tmp_path / "a.toml")
    second = write_calibrated_scenario({"digits-small": {"accuracy": 0.7, "seconds_per_token": 0.02,
                                                         "max_tokens": 16, "bits_per_output": 2048}},
                                      tmp_path / "b.toml", base_scenario=first)
    asp = market_scenario.load_scenario(second).asps[0]
    assert asp.accuracy == 0.7 and asp.seconds_per_token == 0.02
