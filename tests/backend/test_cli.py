"""``incentive backend``: JSON report, clean errors."""
from __future__ import annotations

import json

from incentive.cli import main


def test_measure_command_writes_json(tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["backend", "measure", "--model", "digits-small", "--steps", "2", "--samples", "3",
                 "--trials", "2", "--ber", "0.01", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for key in ("accuracy", "tokens", "latency_s", "bits", "device", "accuracy_ci95", "latency_ci95"):
        assert key in report
    assert report["config"]["trials"] == 2 and report["bits"] == 2 * 2048


def test_bad_ber_exits_2_with_message(capsys):
    code = main(["backend", "measure", "--model", "digits-small", "--steps", "2", "--samples", "2", "--ber", "2"])
    assert code == 2
    assert "ber" in capsys.readouterr().err


def test_unknown_model_exits_2(capsys, tmp_path):
    code = main(["backend", "measure", "--model", str(tmp_path / "missing")])
    assert code == 2
    assert "no such model folder" in capsys.readouterr().err
