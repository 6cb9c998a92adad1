"""Scenario files: round trip, the shipped examples, and the malformed-scenario suite.

Every class of bad input the issue lists (unknown field, missing field, wrong type,
negative capacity, weights not summing to 1, reward box outside (0, value_per_qoe], an MU
naming a missing ASP) plus bad TOML, NaN, duplicates, unsupported versions: each must raise
ScenarioError naming the file and the field, and the CLI must exit 2 without a traceback.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from market.errors import ScenarioError
from market.generator import generate_scenario
from market.model import Market
from market.scenario import Scenario, load_scenario, write_scenario

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["default", "small", "medium", "large", "variants"]


def base_doc() -> dict:
    return generate_scenario(2, 3, seed=5).to_dict()


def write_doc(tmp_path: Path, doc: dict, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(doc))
    return path


def test_round_trip(tmp_path):
    scn = generate_scenario(3, 7, seed=11)
    path = write_scenario(scn, tmp_path / "s.toml")
    back = load_scenario(path)
    assert back.market == scn.market and back.asps == scn.asps and back.mus == scn.mus
    assert back.file == str(path)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name):
    scn = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    market = Market.from_scenario(scn)
    assert market.n_asps >= 2 and market.n_mus >= 5


def test_default_scenario_shape():
    scn = load_scenario(ROOT / "scenarios" / "default.toml")
    assert [a.model for a in scn.asps] == ["digits-small", "digits-medium", "digits-large"]
    accuracy = [a.accuracy for a in scn.asps]
    speed = [a.seconds_per_token for a in scn.asps]
    # smallest: least accurate and fastest (the default is measured: medium and large take the same CPU time
    # per token on a 2-core machine within 3%, so only the smallest's speed is ordered)
    assert accuracy == sorted(accuracy) and speed[0] < min(speed[1:])
    assert 10 <= len(scn.mus) <= 14
    kinds = {m.name.split("-")[1] for m in scn.mus}
    assert {"latency", "essay"} <= kinds
    short = [m.tokens_requested for m in scn.mus if "latency" in m.name]
    long = [m.tokens_requested for m in scn.mus if "essay" in m.name]
    assert max(short) < min(long)


def test_pass_through_tables_kept_unvalidated(tmp_path):
    doc = base_doc()
    doc["provisioning"] = {"anything": {"goes": [1, 2]}, "policy": "d3pg"}
    doc["backend"] = {"device": "cpu"}
    scn = load_scenario(write_doc(tmp_path, doc))
    assert scn.extra_tables == {"provisioning": doc["provisioning"], "backend": {"device": "cpu"}}
    out = write_scenario(scn, tmp_path / "again.toml")
    assert load_scenario(out).extra_tables == scn.extra_tables


def test_auto_asp_picks_highest_base_qoe(tmp_path):
    doc = base_doc()
    doc["asp"][0]["accuracy"], doc["asp"][1]["accuracy"] = 0.5, 0.9
    doc["mu"][0]["asp"] = "auto"
    doc["mu"][0]["weights"] = {"accuracy": 1.0, "tokens": 0.0, "timeliness": 0.0}
    doc["mu"][1]["asp"] = "auto"  # tie on accuracy-free weights -> lowest index
    doc["mu"][1]["weights"] = {"accuracy": 0.0, "tokens": 0.0, "timeliness": 1.0}
    market = Market.from_scenario(load_scenario(write_doc(tmp_path, doc)))
    assert market.mu_asp[0] == 1
    assert market.mu_asp[1] == 0


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()

# (description, path in the document, new value, expected field named in the error)
MALFORMED = [
    ("unknown field", ("mu", 1, "colour"), "red", "mu[1].colour"),
    ("unknown market field", ("market", "speed"), 3, "market.speed"),
    ("unknown weight", ("mu", 0, "weights", "beauty"), 0.1, "mu[0].weights.beauty"),
    ("unknown top-level table", ("extras",), {"a": 1}, "extras"),
    ("missing field", ("asp", 1, "compute_capacity"), _DELETE, "asp[1].compute_capacity"),
    ("missing weight", ("mu", 2, "weights", "tokens"), _DELETE, "mu[2].weights.tokens"),
    ("missing version", ("market", "version"), _DELETE, "market.version"),
    ("missing mu array", ("mu",), _DELETE, "mu"),
    ("wrong type string", ("asp", 0, "accuracy"), "high", "asp[0].accuracy"),
    ("wrong type bool", ("mu", 0, "deadline_s"), True, "mu[0].deadline_s"),
    ("wrong type int field", ("market", "seed"), 1.5, "market.seed"),
    ("wrong type table", ("mu", 0, "weights"), [0.3, 0.3, 0.4], "mu[0].weights"),
    ("wrong type name", ("asp", 0, "name"), 7, "asp[0].name"),
    ("negative capacity", ("asp", 0, "bandwidth_capacity"), -1.0e6, "asp[0].bandwidth_capacity"),
    ("zero capacity", ("asp", 1, "compute_capacity"), 0.0, "asp[1].compute_capacity"),
    ("negative cost", ("asp", 1, "compute_cost"), -0.1, "asp[1].compute_cost"),
    ("accuracy above 1", ("asp", 0, "accuracy"), 1.5, "asp[0].accuracy"),
    ("negative weight", ("mu", 0, "weights", "accuracy"), -0.2, "mu[0].weights.accuracy"),
    ("weights sum", ("mu", 1, "weights"), {"accuracy": 0.5, "tokens": 0.5, "timeliness": 0.5}, "mu[1].weights"),
    ("reward above value", ("mu", 0, "reward_max"), 1.0e6, "mu[0].reward_max"),
    ("reward zero", ("mu", 0, "reward_min"), 0.0, "mu[0].reward_min"),
    ("reward negative", ("mu", 2, "reward_min"), -1.0, "mu[2].reward_min"),
    ("reward box inverted", ("mu", 0, "reward_min"), 1.0e5, "mu[0].reward_min"),
    ("missing ASP", ("mu", 2, "asp"), "nowhere", "mu[2].asp"),
    ("NaN", ("mu", 1, "payload_bits"), float("nan"), "mu[1].payload_bits"),
    ("infinity", ("asp", 0, "max_tokens"), float("inf"), "asp[0].max_tokens"),
    ("unsupported version", ("market", "version"), 99, "market.version"),
    ("unknown variant", ("market", "bandwidth_model"), "optical", "market.bandwidth_model"),
    ("both link fields", ("mu", 0, "distance_m"), 50.0, "mu[0].spectral_efficiency"),
    ("no link field", ("mu", 0, "spectral_efficiency"), _DELETE, "mu[0].spectral_efficiency"),
    ("duplicate MU", ("mu", 1, "name"), "DUP", "mu[1].name"),
    ("empty ASP array", ("asp",), [], "asp"),
]


@pytest.mark.parametrize("desc,path,value,field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_scenarios(tmp_path, desc, path, value, field):
    doc = base_doc()
    if desc == "duplicate MU":
        doc["mu"][0]["name"] = "DUP"
    _set(doc, path, value)
    file = write_doc(tmp_path, doc)
    with pytest.raises(ScenarioError) as info:
        load_scenario(file)
    assert info.value.file == str(file)
    assert info.value.field == field, str(info.value)
    assert str(file) in str(info.value) and field in str(info.value)


def test_from_dict_names_memory_file():
    doc = base_doc()
    doc["asp"][0]["accuracy"] = "x"
    with pytest.raises(ScenarioError, match=r"<memory>: field 'asp\[0\].accuracy'"):
        Scenario.from_dict(doc)
    with pytest.raises(ScenarioError, match="given.toml"):
        Scenario.from_dict(doc, file="given.toml")


def test_not_toml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("[market\nversion = 1\n")
    with pytest.raises(ScenarioError, match="broken.toml: not valid TOML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "absent.toml")


def test_write_refuses_invalid_scenario(tmp_path):
    scn = generate_scenario(2, 2, seed=1)
    bad_mu = dataclasses.replace(scn.mus[0], reward_max=scn.mus[0].value_per_qoe * 2)
    bad = dataclasses.replace(scn, mus=(bad_mu,) + scn.mus[1:])
    with pytest.raises(ScenarioError, match="reward_max"):
        write_scenario(bad, tmp_path / "never.toml")
    assert not (tmp_path / "never.toml").exists()


@pytest.mark.parametrize("command", ["solve", "scenario check"])
def test_cli_malformed_exit_2_without_traceback(tmp_path, command):
    doc = base_doc()
    doc["mu"][1]["weights"]["timeliness"] = 0.9
    file = write_doc(tmp_path, doc, "weights.toml")
    proc = subprocess.run([sys.executable, "-m", "incentive", *command.split(), str(file)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "weights.toml" in proc.stderr and "mu[1].weights" in proc.stderr


def test_cli_scenario_new_writes_valid_seeded_files(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"gen{i}.toml"
        proc = subprocess.run([sys.executable, "-m", "incentive", "scenario", "new", "--asps", "4", "--mus", "9",
                               "--seed", "3", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    scn = load_scenario(tmp_path / "gen0.toml")
    assert len(scn.asps) == 4 and len(scn.mus) == 9
    check = subprocess.run([sys.executable, "-m", "incentive", "scenario", "check", str(tmp_path / "gen0.toml")],
                           capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0 and "4 ASPs, 9 MUs" in check.stdout
