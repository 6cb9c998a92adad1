"""``incentive stress``: the report folder, its files, exit codes, and all-or-nothing output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from incentive.cli import main
from incentive.outdir import MARKER
from market.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small.toml"
FAST = ["--starts", "4", "--samples", "4", "--workers", "1", "--quiet"]


def test_report_folder_has_every_file(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["stress", str(SMALL), "--out", str(out), "--perturb", "compute_capacity=0.2",
                 "--perturb", "weights=0.05", *FAST])
    assert code == 0
    names = {p.name for p in out.iterdir()} - {MARKER}
    assert (out / MARKER).exists()  # the output policy's marker: this folder is a stress report
    assert names == {"report.md", "stress.json", "equilibrium.json", "uniqueness.csv", "sensitivity.csv",
                     "sensitivity_full.npz", "tornado.png", "robustness.csv", "robustness.png", "worst_case.toml"}
    data = json.loads((out / "stress.json").read_text())
    assert data["uniqueness"]["unique"] is True and data["uniqueness"]["summary"].startswith("unique (spread")
    assert data["robustness"]["perturb"] == {"compute_capacity": 0.2, "weights": 0.05}
    assert data["robustness"]["certified_fraction"] == 1.0
    assert set(data["seconds"]) == {"reference_solve", "uniqueness", "sensitivity", "robustness"}
    assert len(data["sensitivity"]["top"]) > 0 and data["sensitivity"]["kinks"] == []
    load_scenario(out / "worst_case.toml")  # the user can open it
    report = (out / "report.md").read_text()
    for heading in ("## Uniqueness", "## Sensitivity", "## Robustness", "## Time per step"):
        assert heading in report
    assert capsys.readouterr().out == ""  # --quiet


def test_refuses_a_non_empty_out_without_overwrite(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["stress", str(SMALL), "--out", str(out), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"
    assert main(["stress", str(SMALL), "--out", str(out), "--overwrite", "--no-sensitivity", *FAST]) == 0
    assert not (out / "mine.txt").exists() and (out / "report.md").exists()
    # the same stress run again replaces its own report; a different one is refused
    assert main(["stress", str(SMALL), "--out", str(out), "--no-sensitivity", *FAST]) == 0
    assert main(["stress", str(SMALL), "--out", str(out), "--seed", "3", "--no-sensitivity", *FAST]) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--perturb", "capacity=0.2"], "unknown field"),
    (["--perturb", "compute_capacity=2"], "[0, 1)"),
    (["--starts", "-1"], "--starts"),
    (["--worst-by", "happiness"], "--worst-by"),
    (["--solver", "nope"], "unknown solver"),
])
def test_bad_flags_exit_2(tmp_path, capsys, args, message):
    assert main(["stress", str(SMALL), "--out", str(tmp_path / "r"), *FAST, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_bad_scenario_names_the_file_and_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMALL.read_text().replace("compute_capacity = ", "compute_capacity = -", 1))
    assert main(["stress", str(bad), "--out", str(tmp_path / "r"), *FAST]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "compute_capacity" in err


def test_a_failure_mid_report_leaves_no_folder(tmp_path, monkeypatch):
    import incentive.stress as stress

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(stress, "plot_robustness", broken)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError):
        main(["stress", str(SMALL), "--out", str(out), *FAST])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_model_variant_report_says_why_there_is_no_sensitivity(tmp_path):
    from market.generator import generate_scenario
    from market.scenario import write_scenario

    variants = write_scenario(generate_scenario(1, 2, 0, bandwidth_model="shannon"), tmp_path / "shannon.toml")
    out = tmp_path / "variants"
    assert main(["stress", str(variants), "--out", str(out), "--starts", "2", "--samples", "2", "--workers", "1",
                 "--quiet"]) == 0
    data = json.loads((out / "stress.json").read_text())
    assert "closed-form" in data["sensitivity"]["error"]
    assert "not computed" in (out / "report.md").read_text()
