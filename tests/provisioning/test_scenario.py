"""Provisioning scenario files: shipped ones load; every malformed field names file and field."""
import dataclasses
import math
from pathlib import Path

import pytest
import tomli_w
import tomllib

from market.errors import ScenarioError
from provisioning.scenario import (
    ProvisioningConfig,
    default_provisioning_scenario_path,
    load_provisioning_scenario,
    provisioning_config_from_dict,
    provisioning_scenarios_dir,
)

SHIPPED = sorted(provisioning_scenarios_dir().glob("*.toml"))


def base_data():
    return tomllib.loads(default_provisioning_scenario_path().read_text())


def test_shipped_scenarios_load():
    names = {p.stem for p in SHIPPED}
    assert {"paper-3users", "users-10", "users-50"} <= names
    for path in SHIPPED:
        config = load_provisioning_scenario(path)
        assert isinstance(config, ProvisioningConfig)
        assert config.name == path.stem
        assert config.source == str(path)


def test_default_is_the_paper_setting():
    config = load_provisioning_scenario(default_provisioning_scenario_path())
    assert config.num_users == 3 and config.objective.diffusion_steps == 25
    for (low, high), paper in zip(config.state.quality_threshold, (7.6, 8.2, 8.5)):
        assert low <= paper <= high


def test_round_trip_through_dict():
    config = load_provisioning_scenario(default_provisioning_scenario_path())
    again = provisioning_config_from_dict(config.to_dict())
    assert again == dataclasses.replace(config, source="<memory>")


def write(tmp_path, data, name="bad.toml"):
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    return path


def mutate(data, dotted, value):
    keys = dotted.split(".")
    table = data
    for key in keys[:-1]:
        table = table[key]
    if value is KeyError:
        del table[keys[-1]]
    else:
        table[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    "dotted,value,field",
    [
        ("objective.qoe_weight", "high", "objective.qoe_weight"),  # ill-typed
        ("objective.qoe_weight", True, "objective.qoe_weight"),  # bool is not a number
        ("objective.cost_weight", -1.0, "objective.cost_weight"),  # negative
        ("channel.noise_power_w", math.nan, "channel.noise_power_w"),  # NaN
        ("channel.nakagami_m", math.inf, "channel.nakagami_m"),  # inf
        ("channel.nakagami_m", 0.2, "channel.nakagami_m"),  # below 0.5
        ("num_users", 0, "num_users"),
        ("max_trials", 2.5, "max_trials"),  # not an integer
        ("objective.user_weights", [1.0, 2.0], "objective.user_weights"),  # wrong length
        ("objective.user_weights", [1.0, "x", 1.0], "objective.user_weights[1]"),
        ("state.distance_m", [300.0, 20.0], "state.distance_m"),  # low > high
        ("state.difficulty", [0.0, 1.5], "state.difficulty[1]"),  # above 1
        ("state.quality_threshold", [[7.4, 7.8], [8.0, 8.4]], "state.quality_threshold"),
        ("reward_mode", "noisy", "reward_mode"),
        ("channel.colour", "blue", "channel.colour"),  # unknown field
        ("extra", 1, "extra"),  # unknown top-level field
        ("latency.max_latency_s", KeyError, "latency.max_latency_s"),  # missing
        ("quality", KeyError, "quality"),  # missing table
        ("latency.max_latency_s", 3.0, "latency.max_latency_s"),  # N_max T >= L_max
    ],
)
def test_malformed_fields_name_file_and_field(tmp_path, dotted, value, field):
    path = write(tmp_path, mutate(base_data(), dotted, value))
    with pytest.raises(ScenarioError) as info:
        load_provisioning_scenario(path)
    assert info.value.file == str(path)
    assert info.value.field == field
    assert str(path) in str(info.value) and field in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_provisioning_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_provisioning_scenario(bad)


def test_from_dict_names_source():
    data = mutate(base_data(), "objective.penalty_per_user", -2.0)
    with pytest.raises(ScenarioError) as info:
        provisioning_config_from_dict(data, source="market.toml [provisioning]")
    assert info.value.file == "market.toml [provisioning]"




def test_shipped_scenarios_are_package_data():
    """Found inside the package (so an installed wheel has them), declared as package data, and
    still reachable at scenarios/provisioning in a source checkout."""
    import tomllib
    from pathlib import Path

    import provisioning

    package = Path(provisioning.__file__).resolve().parent
    assert provisioning_scenarios_dir() == package / "scenarios"
    assert {p.stem for p in SHIPPED} >= {"paper-3users", "users-10", "users-50"}
    root = package.parent
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert "scenarios/*.toml" in pyproject["tool"]["setuptools"]["package-data"]["provisioning"]
    assert (root / "scenarios" / "provisioning" / "paper-3users.toml").resolve() == SHIPPED[0].parent.joinpath("paper-3users.toml")


def test_resume_accepts_the_same_scenario_through_another_path(tmp_path):
    """A run recorded with scenarios/provisioning/... resumes when given provisioning/scenarios/..."""
    from provisioning.training import _same

    link = tmp_path / "link.toml"
    link.symlink_to(provisioning_scenarios_dir() / "paper-3users.toml")
    assert _same("scenario", str(link), str(provisioning_scenarios_dir() / "paper-3users.toml"))
    assert not _same("scenario", str(link), str(provisioning_scenarios_dir() / "users-10.toml"))
    assert not _same("seed", 1, 2)
