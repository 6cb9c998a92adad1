"""Signals and leftovers (issue 12, row 6): SIGTERM is handled like Ctrl-C (exit 130, staged
output removed, finished rows kept) and the sweep's pool workers die with the sweep. Each test
runs the real CLI in a child process and signals it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


SLOW_COMMAND = '''
"""A test command: writes into its staged folder, then waits to be signalled."""
import time

def register(subparsers):
    p = subparsers.add_parser("slow")
    p.add_argument("--out")
    p.set_defaults(func=run)

def run(args):
    from incentive.outdir import check_output_dir, staged_output_dir
    plan = check_output_dir(args.out, command="slow", identity={})
    with staged_output_dir(plan) as stage:
        (stage / "half.csv").write_text("1,2")
        print("staged", flush=True)
        time.sleep(60)
    return 0
'''


def test_sigterm_during_a_staged_write_exits_130_and_removes_the_staging(tmp_path):
    (tmp_path / "slowcmd.py").write_text(SLOW_COMMAND)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import incentive.cli as cli
        cli.COMMANDS["slow"] = ("slowcmd", "test command")
        sys.exit(cli.main(["slow", "--out", {str(tmp_path / 'out')!r}]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "staged"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "SIGTERM" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slowcmd.py"]


def test_sigterm_of_a_sweep_keeps_finished_rows_and_exits_130(tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "incentive", "sweep", "--axis", "capacity", "--values", "0.5", "1", "2", "4",
            "--seeds", *map(str, range(10)), "--asps", "2", "--mus", "12", "--executor", "serial", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (out / "rows.jsonl").is_file() and (out / "rows.jsonl").read_text().count("\n") >= 1,
                  what="a first sweep row")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "SIGTERM" in err
    rows = (out / "rows.jsonl").read_text().splitlines()
    assert 1 <= len(rows) < 40


def test_pool_workers_die_with_a_killed_sweep(tmp_path):
    out = tmp_path / "sweep"
    args = [sys.executable, "-m", "incentive", "sweep", "--axis", "mus", "--values", "40", "60",
            "--seeds", *map(str, range(12)), "--asps", "2", "--executor", "process", "--workers", "2",
            "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        def two_workers():
            workers[:] = _children(proc.pid)
            return len(workers) >= 2

        _wait_for(two_workers, what="two pool workers")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        orphans = [w for w in workers if _alive(w)]
    finally:
        proc.kill()
        for w in workers:  # never leave a worker behind, whatever the outcome
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert orphans == [], f"pool workers outlived the sweep: {orphans}"
