"""``incentive solve``: table, JSON file, --json, --quiet, solver errors, light start-up."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from incentive.cli import main
from solvers.registry import REGISTRY, SolverSpec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "scenarios" / "default.toml"


def test_solve_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "res" / "result.json"
    assert main(["solve", str(DEFAULT), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for heading in ("reward", "compute", "bandwidth", "latency_s", "QoE", "payment", "utility", "regret",
                    "compute_price", "profit", "certificate: PASSED"):
        assert heading in text
    data = json.loads(out.read_text())
    assert data["status"] == "converged" and data["version"] == 1 and data["solver"] == "dual-perturbation"
    assert len(data["mus"]) == 12 and len(data["asps"]) == 3
    assert data["scenario_config"]["version"] == 1 and data["scenario_file"] == str(DEFAULT)
    assert data["certificate"]["passed"] is True and data["certificate"]["tolerance"] == 1e-6


def test_json_and_quiet(capsys):
    assert main(["solve", str(DEFAULT), "--json", "--solver", "implicit-gradient", "--tolerance", "1e-8"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["solver"] == "implicit-gradient" and data["certificate"]["tolerance"] == 1e-8
    assert main(["solve", str(DEFAULT), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""


def test_not_certified_exit_code_and_report(capsys):
    code = main(["solve", str(DEFAULT), "--max-iterations", "1", "--solver", "dual-perturbation-jacobi"])
    assert code == 1
    text = capsys.readouterr().out
    assert "MAX_ITERATIONS" in text and "NOT PASSED" in text


def test_missing_solver_module_is_clean(monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, "ghost", SolverSpec("ghost", "solvers.ghost_module", "solve", description="x"))
    assert main(["solve", str(DEFAULT), "--solver", "ghost"]) == 2
    err = capsys.readouterr().err
    assert "not available in this build" in err and "Traceback" not in err


def test_bad_options_exit_2(capsys):
    assert main(["solve", str(DEFAULT), "--tolerance", "2"]) == 2
    assert main(["solve", str(DEFAULT), "--solver", "no-such-solver"]) == 2
    assert "unknown solver" in capsys.readouterr().err


def test_solve_does_not_import_heavy_libraries():
    code = ("import sys; from incentive.cli import main; main(['solve', 'scenarios/small.toml', '--quiet']);"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'cvxpy', 'pyomo'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
