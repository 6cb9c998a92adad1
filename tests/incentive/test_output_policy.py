"""The output policy (issue 12, rows 1-3): nothing a user has is deleted, bad paths are refused
before any work, sweeps never mix runs. Every command runs in-process through ``incentive.cli.main``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from incentive.cli import main
from market.generator import generate_scenario
from market.scenario import write_scenario


@pytest.fixture()
def scenario_file(tmp_path):
    return write_scenario(generate_scenario(1, 3, 0, name="policy-1x3"), tmp_path / "s.toml")


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def _thesis(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    sentinel = folder / "thesis.txt"
    sentinel.write_text("four years of work")
    return sentinel


# ----------------------------------------------------------------------------- row 1: data loss
@pytest.mark.parametrize("command", ["compare", "run"])
def test_a_non_empty_folder_is_refused_and_kept(command, scenario_file, tmp_path, capsys):
    out = tmp_path / "experiments"
    sentinel = _thesis(out)
    extra = ["--no-trajectory"] if command == "compare" else ["--quick"]
    assert main([command, str(scenario_file), "--out", str(out), *extra]) == 2
    line = _error_line(capsys)
    assert "not empty" in line and "--overwrite" in line and str(out) in line
    assert sentinel.read_text() == "four years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiments", "s.toml"]


@pytest.mark.parametrize("command", ["compare", "run", "sweep"])
def test_a_folder_output_never_replaces_a_file(command, scenario_file, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    args = ["sweep", "--out", str(target)] if command == "sweep" else [command, str(scenario_file), "--out", str(target)]
    assert main(args) == 2
    assert "is a file" in _error_line(capsys)
    assert target.read_text() == "keep me"


def test_overwrite_replaces_and_an_own_run_is_replaced_without_it(scenario_file, tmp_path, capsys):
    out = tmp_path / "cmp"
    _thesis(out)
    assert main(["compare", str(scenario_file), "--out", str(out), "--no-trajectory", "--overwrite"]) == 0
    assert not (out / "thesis.txt").exists() and (out / "comparison.json").is_file()
    marker = json.loads((out / ".incentive.json").read_text())
    assert marker["command"] == "compare"
    # the same command with the same configuration replaces its own output
    assert main(["compare", str(scenario_file), "--out", str(out), "--no-trajectory"]) == 0
    # another configuration is refused, naming the field
    other = write_scenario(generate_scenario(1, 3, 5, name="other"), tmp_path / "other.toml")
    capsys.readouterr()
    assert main(["compare", str(other), "--out", str(out), "--no-trajectory"]) == 2
    line = _error_line(capsys)
    assert "field 'scenario'" in line and "other.toml" in line
    assert (out / "comparison.json").is_file()


def test_an_empty_folder_is_used(scenario_file, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["compare", str(scenario_file), "--out", str(out), "--no-trajectory"]) == 0
    assert (out / "table.txt").is_file()


# ----------------------------------------------------------------------------- row 2: bad paths
def _bad_paths(tmp_path: Path) -> dict[str, str]:
    plain = tmp_path / "plain.txt"
    plain.write_text("a regular file")
    folder = tmp_path / "a-folder"
    folder.mkdir(exist_ok=True)
    return {"proc": "/proc/x.json", "under-file": str(plain / "x.json"), "folder": str(folder), "dot": "."}


FILE_COMMANDS = {
    "solve": lambda s: ["solve", s],
    "scenario new": lambda s: ["scenario", "new", "--asps", "1", "--mus", "2"],
    "provision evaluate": lambda s: ["provision", "evaluate", "--policy", "static", "--episodes", "2"],
    "backend measure": lambda s: ["backend", "measure", "--samples", "1"],
}
DIR_COMMANDS = {
    "run": lambda s: ["run", s, "--quick"],
    "compare": lambda s: ["compare", s, "--no-trajectory"],
    "sweep": lambda s: ["sweep", "--values", "2", "--seeds", "0", "--executor", "serial"],
    "provision train": lambda s: ["provision", "train", "--agent", "d3pg", "--steps", "5", "--no-progress"],
}


@pytest.mark.parametrize("kind", ["proc", "under-file", "folder", "dot"])
@pytest.mark.parametrize("command", sorted(FILE_COMMANDS))
def test_file_outputs_check_the_path_before_any_work(command, kind, scenario_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _bad_paths(tmp_path)[kind]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main([*FILE_COMMANDS[command](str(scenario_file)), "--out", path]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", "work was done (and printed) before the path was checked"
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    assert "--out" in captured.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("kind", ["proc", "under-file", "dot"])
@pytest.mark.parametrize("command", sorted(DIR_COMMANDS))
def test_folder_outputs_check_the_path_before_any_work(command, kind, scenario_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _bad_paths(tmp_path)[kind]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    assert main([*DIR_COMMANDS[command](str(scenario_file)), "--out", path]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err, captured.err
    assert "--out" in captured.err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_dot_is_refused_even_with_overwrite(scenario_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(scenario_file), "--out", ".", "--overwrite", "--no-trajectory"]) == 2
    assert "current folder" in _error_line(capsys)
    assert (tmp_path / "s.toml").is_file()


def test_solve_out_to_a_good_path_still_writes(scenario_file, tmp_path):
    out = tmp_path / "deep" / "er" / "result.json"
    assert main(["solve", str(scenario_file), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["status"] == "converged"


# ----------------------------------------------------------------------------- row 3: sweeps
SWEEP = ["sweep", "--axis", "capacity", "--asps", "1", "--mus", "3", "--executor", "serial"]


@pytest.mark.parametrize("change,field", [
    (["--values", "0.5", "--seeds", "0"], "values"),
    (["--values", "1", "--seeds", "1"], "seeds"),
    (["--axis", "weight_spread", "--values", "1", "--seeds", "0"], "axis"),
])
def test_sweep_refuses_another_sweep_and_names_the_field(change, field, tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*SWEEP, "--values", "1", "--seeds", "0", "--out", str(out)]) == 0
    rows = (out / "rows.jsonl").read_text()
    config = (out / "config.json").read_text()
    capsys.readouterr()
    assert main([*SWEEP, *change, "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert f"field '{field}'" in line and "different sweep" in line
    assert (out / "rows.jsonl").read_text() == rows and (out / "config.json").read_text() == config


def test_sweep_overwrite_starts_afresh(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main([*SWEEP, "--values", "1", "--seeds", "0", "--out", str(out)]) == 0
    assert main([*SWEEP, "--values", "0.5", "--seeds", "0", "--out", str(out), "--overwrite"]) == 0
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert [r["value"] for r in rows] == [0.5]
    assert json.loads((out / "config.json").read_text())["values"] == [0.5]


# ----------------------------------------------------------------------------- row 6: leftovers, umask
def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_of_a_killed_run_is_cleaned_by_the_next_run(scenario_file, tmp_path):
    import hashlib
    import socket

    host = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
    dead = _dead_pid()
    stale = tmp_path / f".out.partial-{host}-{dead}-abcd1234"
    stale.mkdir()
    (stale / "half.csv").write_text("1,2")
    alive = tmp_path / f".other.partial-{host}-{os.getpid()}-abcd1234"  # a live run: kept
    alive.mkdir()
    foreign = tmp_path / f".x.partial-00000000-{dead}-abcd1234"  # another machine's: kept
    foreign.mkdir()
    assert main(["compare", str(scenario_file), "--out", str(tmp_path / "out2"), "--no-trajectory"]) == 0
    assert not stale.exists() and alive.exists() and foreign.exists()


def test_a_set_aside_output_of_a_killed_swap_is_put_back(tmp_path):
    from incentive.outdir import _host_tag, clean_stale_staging

    old = tmp_path / f".results.old-{_host_tag()}-{_dead_pid()}-abcd1234"
    old.mkdir()
    (old / "report.md").write_text("previous")
    clean_stale_staging(tmp_path)
    assert (tmp_path / "results" / "report.md").read_text() == "previous"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_output_folders_honour_the_umask(umask, scenario_file, tmp_path):
    previous = os.umask(umask)
    try:
        out = tmp_path / "cmp"
        assert main(["compare", str(scenario_file), "--out", str(out), "--no-trajectory"]) == 0
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / "table.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_staging_under_the_policy_directly(tmp_path):
    from incentive.outdir import MARKER, check_output_dir, staged_output_dir

    target = tmp_path / "t"
    plan = check_output_dir(target, command="unit", identity={"a": 1})
    with staged_output_dir(plan) as stage:
        (stage / "f").write_text("x")
    assert json.loads((target / MARKER).read_text()) == {"command": "unit", "identity": {"a": 1}}
    # a folder filled by someone else while the command ran is never deleted
    other = tmp_path / "u"
    plan = check_output_dir(other)
    with pytest.raises(Exception, match="filled by something else"):
        with staged_output_dir(plan) as stage:
            (stage / "f").write_text("new")
            _thesis(other)
    assert (other / "thesis.txt").is_file()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("u.new-")]
    assert len(kept) == 1 and (kept[0] / "f").read_text() == "new"


def test_an_overwrite_decision_never_outlives_its_command(scenario_file, tmp_path, capsys):
    """``run --overwrite`` that stops on bad input leaves no permission behind for a later write."""
    from incentive.outdir import staged_output_dir

    out = tmp_path / "kept"
    sentinel = _thesis(out)
    bad = tmp_path / "bad.toml"
    bad.write_text("[market]\nversion = 1\n")
    assert main(["compare", str(bad), "--out", str(out), "--overwrite", "--no-trajectory"]) == 2
    with pytest.raises(Exception, match="not empty"):
        with staged_output_dir(out):
            pass
    assert sentinel.read_text() == "four years of work"
