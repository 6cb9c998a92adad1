"""The columnar (Parquet) scenario format: round trips, the same validation messages as TOML
(same file-and-field naming, one rule table), and the columnar CLI paths."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market.columnar import (ASP_FILE, COLUMNAR_VERSION, FORMAT_NAME, MU_FILE, ColumnarScenario, load_columnar,
                             read_result_tables, write_columnar)
from market.errors import ScenarioError
from market.generator import generate_columnar, generate_scenario
from market.model import Market
from market.scenario import Scenario, load_scenario, write_scenario
from tests.market.test_scenario import _DELETE, _set, base_doc

ROOT = Path(__file__).resolve().parents[2]


def write_document_as_parquet(doc: dict, folder: Path) -> Path:
    """Write a (possibly malformed) TOML-shaped document as the columnar folder, unvalidated."""
    folder.mkdir()
    meta = {"aigc.format": FORMAT_NAME, "aigc.version": str(COLUMNAR_VERSION),
            "aigc.market": json.dumps(doc.get("market", {})), "aigc.extra_tables": "{}"}
    rows = []
    for mu in doc["mu"]:
        row = {k: v for k, v in mu.items() if k != "weights"}
        row.update({f"weights.{k}": v for k, v in mu.get("weights", {}).items()})
        rows.append(row)
    for name, items in ((ASP_FILE, doc["asp"]), (MU_FILE, rows)):
        keys = list(dict.fromkeys(k for item in items for k in item))
        table = pa.table({k: pa.array([item.get(k) for item in items]) for k in keys})
        pq.write_table(table.replace_schema_metadata(meta), folder / name)
    return folder


def test_round_trip_toml_parquet_toml(tmp_path):
    scn = generate_scenario(3, 9, seed=4)
    write_columnar(ColumnarScenario.from_scenario(scn), tmp_path / "s.parquet")
    back = load_columnar(tmp_path / "s.parquet").to_scenario()
    assert back.market == scn.market and back.asps == scn.asps and back.mus == scn.mus
    a, b = Market.from_scenario(scn), load_columnar(tmp_path / "s.parquet").to_market()
    for name in ("mu_asp", "spectral_efficiency", "snr_hz", "reward_max", "compute_capacity", "qoe_required"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_generated_columnar_is_valid_and_grouped_by_asp(tmp_path):
    cs = generate_columnar(5, 400, seed=2)
    write_columnar(cs, tmp_path / "g.parquet")
    back = load_columnar(tmp_path / "g.parquet")
    assert np.all(np.diff(back.mu_asp) >= 0) and set(back.mu_asp) == set(range(5))
    # the TOML path accepts it too (the same rules)
    write_scenario(back.to_scenario(), tmp_path / "g.toml")
    assert len(load_scenario(tmp_path / "g.toml").mus) == 400


def test_existing_target_is_not_overwritten(tmp_path):
    cs = generate_columnar(2, 10, seed=0)
    write_columnar(cs, tmp_path / "x.parquet")
    with pytest.raises(Exception, match="exists"):
        write_columnar(cs, tmp_path / "x.parquet")


CASES = [
    ("negative capacity", ("asp", 0, "bandwidth_capacity"), -1.0e6),
    ("accuracy above 1", ("asp", 0, "accuracy"), 1.5),
    ("negative weight", ("mu", 0, "weights", "accuracy"), -0.2),
    ("weights sum", ("mu", 1, "weights"), {"accuracy": 0.5, "tokens": 0.5, "timeliness": 0.5}),
    ("reward above value", ("mu", 0, "reward_max"), 1.0e6),
    ("reward zero", ("mu", 0, "reward_min"), 0.0),
    ("reward box inverted", ("mu", 0, "reward_min"), 1.0e5),
    ("missing ASP", ("mu", 2, "asp"), "nowhere"),
    ("NaN", ("mu", 1, "payload_bits"), float("nan")),
    ("infinity", ("asp", 0, "max_tokens"), float("inf")),
    ("unsupported version", ("market", "version"), 99),
    ("unknown variant", ("market", "bandwidth_model"), "optical"),
    ("both link fields", ("mu", 0, "distance_m"), 50.0),
    ("duplicate MU", ("mu", 1, "name"), "DUP"),
    ("missing value", ("mu", 2, "deadline_s"), _DELETE),
]


@pytest.mark.parametrize("desc,path,value", CASES, ids=[c[0] for c in CASES])
def test_same_messages_as_toml(tmp_path, desc, path, value):
    doc = base_doc()
    if desc == "duplicate MU":
        doc["mu"][0]["name"] = "DUP"
    _set(doc, path, value)
    with pytest.raises(ScenarioError) as toml_error:
        Scenario.from_dict(doc, file="x")
    folder = write_document_as_parquet(doc, tmp_path / "bad.parquet")
    with pytest.raises(ScenarioError) as columnar_error:
        load_columnar(folder)
    assert columnar_error.value.field == toml_error.value.field, str(columnar_error.value)
    assert columnar_error.value.message == toml_error.value.message
    assert columnar_error.value.file.startswith(str(folder))


@pytest.mark.parametrize("column,values,field", [
    ("colour", ["red", "red", "red"], "mu.colour"),
    ("deadline_s", [True, False, True], "mu.deadline_s"),
    ("name", [1, 2, 3], "mu.name"),
])
def test_column_type_errors_name_the_column(tmp_path, column, values, field):
    folder = write_document_as_parquet(base_doc(), tmp_path / "bad.parquet")
    table = pq.read_table(folder / MU_FILE)
    meta = table.schema.metadata
    if column in table.column_names:
        table = table.set_column(table.column_names.index(column), column, pa.array(values))
    else:
        table = table.append_column(column, pa.array(values))
    pq.write_table(table.replace_schema_metadata(meta), folder / MU_FILE)
    with pytest.raises(ScenarioError) as info:
        load_columnar(folder)
    assert info.value.field == field and info.value.file == str(folder / MU_FILE)


def test_cli_columnar_solve_matches_toml(tmp_path):
    py = [sys.executable, "-m", "incentive"]
    toml = tmp_path / "s.toml"
    write_scenario(generate_scenario(2, 8, seed=3), toml)
    run = lambda *a: subprocess.run([*py, *a], capture_output=True, text=True, cwd=ROOT)  # noqa: E731
    assert run("scenario", "convert", str(toml), str(tmp_path / "s.parquet")).returncode == 0
    res = run("solve", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "converged" and summary["certificate"]["passed"] and summary["n_mus"] == 8
    mus, asps = read_result_tables(tmp_path / "out")
    assert run("solve", str(toml), "--out", str(tmp_path / "r.json"), "--quiet").returncode == 0
    ref = json.loads((tmp_path / "r.json").read_text())
    np.testing.assert_allclose(mus["reward"], [m["reward"] for m in ref["mus"]], rtol=1e-12)
    assert list(asps["name"]) == [a["name"] for a in ref["asps"]]
    bad = run("scenario", "check", str(tmp_path / "missing.parquet"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "missing.parquet" in bad.stderr


@pytest.mark.parametrize("path,value", [
    (("mu", 1, "deadline_s"), 1e-300),
    (("asp", 1, "compute_capacity"), 5e-324),
    (("mu", 2, "value_per_qoe"), 1e300),
])
def test_physical_ranges_same_as_toml(tmp_path, path, value):
    doc = base_doc()
    if path[-1] == "value_per_qoe":
        doc["mu"][2]["reward_max"] = doc["mu"][2]["reward_min"] = 1.0
    _set(doc, path, value)
    with pytest.raises(ScenarioError) as toml_error:
        Scenario.from_dict(doc, file="x")
    with pytest.raises(ScenarioError) as columnar_error:
        load_columnar(write_document_as_parquet(doc, tmp_path / "bad.parquet"))
    assert (columnar_error.value.field, columnar_error.value.message) == (toml_error.value.field,
                                                                          toml_error.value.message)
