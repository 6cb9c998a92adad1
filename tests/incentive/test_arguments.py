"""Every command-line argument is checked before any work (issue 12, row 4): a one-line message
naming the flag, exit code 2, nothing printed on stdout, no traceback."""
from __future__ import annotations

import pytest

from incentive.cli import main

SCENARIO = "scenarios/small.toml"

BAD = [
    (["provision", "evaluate", "--policy", "d3pg", "--seed", "-1"], "--seed"),
    (["provision", "evaluate", "--policy", "d3pg", "--best-of-k", "-3"], "--best-of-k"),
    (["provision", "evaluate", "--policy", "d3pg", "--best-of-k", "0"], "--best-of-k"),
    (["provision", "evaluate", "--policy", "static", "--seed", str(2**63)], "--seed"),
    (["provision", "train", "--agent", "d3pg", "--first-seed", "-2"], "--first-seed"),
    (["provision", "compare", "--seeds", "0"], "--seeds"),
    (["run", SCENARIO, "--seed", "-1"], "--seed"),
    (["run", SCENARIO, "--samples", "0"], "--samples"),
    (["run", SCENARIO, "--steps", "1e9"], "--steps"),
    (["scenario", "new", "--asps", "1", "--mus", "1", "--seed", str(2**64)], "--seed"),
    (["scenario", "new", "--asps", "0", "--mus", "1"], "--asps"),
    (["scenario", "new", "--asps", "1", "--mus", "10000000000"], "--mus"),
    (["solve", SCENARIO, "--tolerance", "nan"], "--tolerance"),
    (["solve", SCENARIO, "--max-iterations", "0"], "--max-iterations"),
    (["sweep", "--values", "inf"], "--values"),
    (["sweep", "--workers", "0"], "--workers"),
    (["backend", "measure", "--ber", "1.5"], "--ber"),
    (["backend", "measure", "--samples", "-4"], "--samples"),
    (["backend", "calibrate", "--steps", "0"], "--steps"),
    (["backend", "shared-denoise", "--ber", "nan"], "--ber"),
]


@pytest.mark.parametrize("argv,flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_are_one_line_errors_before_any_work(argv, flag, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert flag in captured.err


def test_cuda_on_a_cpu_build_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["run", SCENARIO, "--device", "cuda"], ["backend", "measure", "--device", "cuda"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--device" in err and "CUDA" in err and len(err.strip().splitlines()) == 1
