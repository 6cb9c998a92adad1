"""Physical ranges (issue 12, row 4): extreme but valid-looking numbers are validation errors
that name the file and the field (exit 2), in every command that reads the file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from incentive.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = (ROOT / "scenarios" / "small.toml").read_text()
PAPER = (ROOT / "scenarios" / "provisioning" / "paper-3users.toml").read_text()


def _edit(text: str, key: str, value: str, *, first_only: bool = True) -> str:
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.M)
    assert pattern.search(text), key
    return pattern.sub(f"{key} = {value}", text, count=1 if first_only else 0)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# (key, value, field named in the message): the cases, then the ones next to them
MARKET_CASES = [
    ("value_per_qoe", "1e308", "mu[0].value_per_qoe"),
    ("compute_capacity", "5e-324", "asp[0].compute_capacity"),
    ("deadline_s", "1e-300", "mu[0].deadline_s"),
    ("payload_bits", "1e308", "mu[0].payload_bits"),
    ("seed", "9223372036854775808", "market.seed"),
    ("seed", "1" + "0" * 40, "market.seed"),
    ("max_tokens", "1" + "0" * 400, "asp[0].max_tokens"),
    ("seconds_per_token", "1e-320", "asp[0].seconds_per_token"),
    ("bandwidth_capacity", "1e300", "asp[0].bandwidth_capacity"),
    ("reward_min", "1e-300", "mu[0].reward_min"),
    ("tokens_requested", "1e300", "mu[0].tokens_requested"),
    ("spectral_efficiency", "1e-300", "mu[0].spectral_efficiency"),
    ("noise_psd_w_per_hz", "1e-300", "market.noise_psd_w_per_hz"),
    ("max_iterations", "9223372036854775807000", "market.max_iterations"),
]


@pytest.mark.parametrize("key,value,field", MARKET_CASES)
@pytest.mark.parametrize("command", ["scenario check", "solve", "compare"])
def test_out_of_range_market_numbers_are_validation_errors(command, key, value, field, tmp_path, capsys):
    path = tmp_path / "extreme.toml"
    path.write_text(_edit(SMALL, key, value))
    args = {"scenario check": ["scenario", "check", str(path)], "solve": ["solve", str(path)],
            "compare": ["compare", str(path), "--no-trajectory"]}[command]
    assert main(args) == 2
    err = _one_line(capsys)
    assert "extreme.toml" in err and f"'{field}'" in err


def test_a_distance_that_implies_an_absurd_link_is_refused(tmp_path, capsys):
    text = SMALL.replace("spectral_efficiency = ", "distance_m = 1e-2\n# was spectral_efficiency = ", 1)
    text = _edit(text, "noise_psd_w_per_hz", "1e-25")
    text = _edit(text, "path_loss_exponent", "8.0")
    path = tmp_path / "near.toml"
    path.write_text(text)
    assert main(["scenario", "check", str(path)]) == 2
    assert "'mu[0].distance_m'" in _one_line(capsys)


def test_the_largest_seed_is_accepted(tmp_path, capsys):
    path = tmp_path / "seed.toml"
    path.write_text(_edit(SMALL, "seed", str(2**63 - 1)))
    assert main(["solve", str(path), "--quiet"]) == 0


PROVISIONING_CASES = [
    ("qoe_weight", "1e308", "objective.qoe_weight"),
    ("noise_power_w", "1e-320", "channel.noise_power_w"),
    ("max_latency_s", "1e300", "latency.max_latency_s"),
    ("diffusion_steps", "1" + "0" * 30, "objective.diffusion_steps"),
    ("image_bits", "1" + "0" * 400, "latency.image_bits"),
    ("score_easy", "1e6", "quality.score_easy"),
]


@pytest.mark.parametrize("key,value,field", PROVISIONING_CASES)
def test_out_of_range_provisioning_numbers_are_validation_errors(key, value, field, tmp_path, capsys):
    path = tmp_path / "prov.toml"
    path.write_text(_edit(PAPER, key, value))
    assert main(["provision", "evaluate", "--policy", "static", "--scenario", str(path), "--episodes", "2"]) == 2
    err = _one_line(capsys)
    assert "prov.toml" in err and f"'{field}'" in err


def test_a_binary_provisioning_file_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "binary.toml"
    path.write_bytes(bytes(range(256)) * 4)
    assert main(["provision", "evaluate", "--policy", "static", "--scenario", str(path), "--episodes", "2"]) == 2
    assert "binary.toml" in _one_line(capsys)


def test_shipped_scenarios_lie_within_the_bounds(capsys):
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        assert main(["scenario", "check", str(path)]) == 0, capsys.readouterr().err
    from provisioning.scenario import load_provisioning_scenario

    for path in sorted((ROOT / "scenarios" / "provisioning").glob("*.toml")):
        load_provisioning_scenario(path)


def test_the_bounds_table_gives_a_reason_for_every_field():
    from market.bounds import MARKET_BOUNDS
    from market.scenario import scenario_field_names
    from provisioning.scenario import PROVISIONING_BOUNDS

    numeric = {"market": {"version", "name", "description", "bandwidth_model", "asp_cost", "solver"},
               "asp": {"name", "model"}, "mu": {"name", "asp", "weights"}}
    for table, names in scenario_field_names().items():
        for name in names:
            if name not in numeric.get(table, set()):
                assert f"{table}.{name}" in MARKET_BOUNDS, f"{table}.{name} has no physical range"
    for bound in [*MARKET_BOUNDS.values(), *PROVISIONING_BOUNDS.values()]:
        assert bound.low <= bound.high and len(bound.reason) > 5
