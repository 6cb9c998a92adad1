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


def test_backend_calibrate_and_run_calibrate_give_identical_profiles(tmp_path):
    """One calibration: `incentive run --calibrate` and `incentive backend calibrate` with the same
    seed, grids and samples measure the same requests, so every measured figure but the timing is
    identical; seconds per token is the same definition (CPU time per generated token at unit
    compute, batched), re-measured, so it agrees only up to the machine's timing noise."""
    from incentive.cli import main

    scenario = tmp_path / "one.toml"
    scenario.write_text("""
[market]
version = 1
name = "one"

[[asp]]
name = "edge"
accuracy = 0.5
seconds_per_token = 0.01
max_tokens = 64.0
compute_capacity = 4.0
bandwidth_capacity = 1.0e6
compute_cost = 0.01
bandwidth_cost = 1.0e-8
model = "digits-small"

[[mu]]
name = "u0"
asp = "edge"
tokens_requested = 16.0
deadline_s = 1.0
payload_bits = 4096.0
value_per_qoe = 5.0
reward_min = 0.1
reward_max = 4.0
spectral_efficiency = 3.0

[mu.weights]
accuracy = 0.5
tokens = 0.2
timeliness = 0.3

[provisioning]
max_trials = 2
""")
    run_out, cli_out = tmp_path / "run", tmp_path / "cli"
    assert main(["run", str(scenario), "--out", str(run_out), "--calibrate", "--calibration-samples", "6",
                 "--samples", "1", "--seed", "3", "--provision", "oracle", "--no-progress"]) == 0
    used = json.loads((run_out / "calibration" / "config.json").read_text())
    assert main(["backend", "calibrate", "--out", str(cli_out), "--models", "digits-small",
                 "--steps", *map(str, used["steps_grid"]), "--trials", *map(str, used["trials_grid"]),
                 "--samples", "6", "--seed", "3"]) == 0
    ours = json.loads((run_out / "calibration" / "profiles.json").read_text())["digits-small"]
    theirs = json.loads((cli_out / "profiles.json").read_text())["digits-small"]
    for key in ("accuracy", "accuracy_ci95", "max_tokens", "bits_per_output", "steps", "samples", "seed", "device"):
        assert ours[key] == theirs[key], key
    assert 1 / 3 < ours["seconds_per_token"] / theirs["seconds_per_token"] < 3
    assert (json.loads((run_out / "calibration" / "accuracy.json").read_text())
            == json.loads((cli_out / "accuracy.json").read_text()))
    # the run went on with the calibrated scenario: its ASP is the measured one
    result = json.loads((run_out / "result.json").read_text())
    assert result["calibrated"] is True and result["calibration"]["profiles"]["digits-small"]["accuracy"] == ours["accuracy"]
