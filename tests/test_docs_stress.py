"""The user's test file shown in docs/stress.md runs green with pytest against the public API.

The block after ``<!-- user-test-file -->`` is written to a fresh folder next to a copy of
``scenarios/small.toml`` and run with pytest in a subprocess, as a user would.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_user_test_file_runs_green(tmp_path):
    text = (ROOT / "docs" / "stress.md").read_text()
    match = re.search(r"<!-- user-test-file -->\s*```python\n(.*?)```", text, re.S)
    assert match, "docs/stress.md lost its user test file"
    (tmp_path / "test_my_family.py").write_text(match.group(1))
    (tmp_path / "scenarios").mkdir()
    shutil.copy(ROOT / "scenarios" / "small.toml", tmp_path / "scenarios" / "small.toml")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_family.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 passed" in proc.stdout
