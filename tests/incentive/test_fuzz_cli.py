"""Fuzzing the real command line (issue 12): hypothesis writes scenario files, provisioning files
and argument lists, runs ``incentive.cli.main`` in-process with stdout and stderr captured, and
checks the one promise: every outcome is exit 0 with a certified or honestly labelled result, or
exit 2 with a one-line message naming the file (and the field, where there is one) - never a
traceback (an exception escaping ``main`` fails the test), never a partial output.

Budgets: ``make test`` (and ``HYPOTHESIS_PROFILE=ci``) run the "ci" size, :data:`CI_EXAMPLES`,
2,000+ cases in about half a minute on two cores, derandomised so CI is reproducible;
``HYPOTHESIS_PROFILE=nightly`` runs :data:`NIGHTLY_EXAMPLES` (39,000) with fresh random draws. ``docs/reliability.md`` reports what the runs found.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from incentive.cli import main
from market.bounds import MARKET_BOUNDS
from market.generator import generate_scenario

ROOT = Path(__file__).resolve().parents[2]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
#: Examples per test at the "ci" size (also the default): 2,200 cases in all.
CI_EXAMPLES = {"scenario_check": 1000, "provisioning_check": 400, "arguments": 500, "solve": 300}
#: The "nightly" size: 39,000 cases; the solve cases include the Shannon and quadratic variants
#: (up to 20 s each on extreme markets), so they grow less.
NIGHTLY_EXAMPLES = {"scenario_check": 20000, "provisioning_check": 8000, "arguments": 10000, "solve": 1000}


#: The nightly size runs past the suite's 600 s per-test limit (pytest-timeout): lift it there.
pytestmark = [pytest.mark.timeout(0)] if PROFILE == "nightly" else []


def fuzz_settings(name: str):
    """Hypothesis settings of one fuzz test at the active profile's size."""
    nightly = PROFILE == "nightly"
    return settings(max_examples=(NIGHTLY_EXAMPLES if nightly else CI_EXAMPLES)[name], deadline=None,
                    derandomize=not nightly, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``incentive ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def assert_clean_refusal(code: int, out: str, err: str, *, file: str | None = None, field_needed: bool = True) -> None:
    """Exit 2, one line on stderr, naming ``file`` and a field (file-level problems name the file)."""
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    if file is not None:
        assert file in lines[0], lines[0]
        file_level = any(s in lines[0] for s in ("not valid TOML", "not UTF-8", "must be a table", "file not found"))
        if field_needed and not file_level:
            assert "field '" in lines[0], lines[0]


# ----------------------------------------------------------------------------- values
EXTREME_FLOATS = [0.0, -0.0, -1.0, 5e-324, 1e-300, 1e-12, 1e-6, 0.5, 1.0, 3.0, 1e6, 1e12, 1e300, 1.7976931348623157e308,
                  math.inf, -math.inf, math.nan]
EXTREME_INTS = [0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30, 10**400]


def any_value():
    """Anything TOML can hold, biased to the edges."""
    return st.one_of(
        st.sampled_from(EXTREME_FLOATS), st.sampled_from(EXTREME_INTS),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.text(max_size=6), st.booleans(),
        st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
        st.dictionaries(st.sampled_from(["a", "name", "x"]), st.integers(min_value=0, max_value=3), max_size=2),
    )


def _base_scenario(n_asps: int, n_mus: int, seed: int) -> dict:
    return generate_scenario(n_asps, n_mus, seed, name=f"fuzz-{n_asps}x{n_mus}-{seed}").to_dict()


BASES = {(a, m, s): _base_scenario(a, m, s) for a in (1, 2) for m in (1, 3) for s in (0, 1)}


@st.composite
def scenario_bytes(draw) -> bytes:
    """A market scenario file: a valid one with 0-3 fields set, deleted or added, or broken bytes."""
    base = json.loads(json.dumps(BASES[draw(st.sampled_from(sorted(BASES)))]))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        where = draw(st.sampled_from(["market", "asp", "mu", "mu.weights", "top"]))
        if where == "top":
            key = draw(st.sampled_from(["market", "asp", "mu", "provisioning", "backend", "extra"]))
            if draw(st.booleans()):
                base.pop(key, None)
            else:
                base[key] = draw(any_value())
            continue
        if where == "market":
            table = base.get("market")
        else:
            items = base.get(where.split(".")[0])
            if not isinstance(items, list) or not items:
                continue
            table = items[draw(st.integers(min_value=0, max_value=len(items) - 1))]
            if where == "mu.weights" and isinstance(table, dict):
                table = table.get("weights")
        if not isinstance(table, dict):
            continue
        key = draw(st.sampled_from(sorted(table) + ["unknown_field"]))
        action = draw(st.sampled_from(["set", "set", "set", "delete"]))
        if action == "delete":
            table.pop(key, None)
        else:
            table[key] = draw(any_value())
    try:
        data = tomli_w.dumps(base).encode()
    except (TypeError, ValueError):  # a value TOML cannot hold (e.g. None): write it broken instead
        data = b"[market\nversion = 1\n"
    mangle = draw(st.sampled_from(["none"] * 8 + ["truncate", "binary", "byte"]))
    if mangle == "truncate":
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    elif mangle == "binary":
        data = draw(st.binary(min_size=1, max_size=200))
    elif mangle == "byte" and data:
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(min_value=0, max_value=255))]) + data[i + 1:]
    return data


def _write(data: bytes, suffix: str = ".toml") -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / f"case{suffix}"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def case_file():
    """One scratch file per test, rewritten for every case (cheaper than a folder per case)."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield folder / "case.toml"
    _remove(folder)


@fuzz_settings("scenario_check")
@given(data=scenario_bytes())
def test_scenario_check_accepts_or_names_the_field(case_file, data):
    path = case_file
    path.write_bytes(data)
    code, out, err = run_cli(["scenario", "check", str(path)])
    event(f"check exit {code}")
    if code == 0:
        assert out.startswith(f"{path}: ok") and err == ""
    else:
        assert_clean_refusal(code, out, err, file=str(path))


# ----------------------------------------------------------------------------- provisioning files
PAPER = __import__("tomllib").loads((ROOT / "scenarios" / "provisioning" / "paper-3users.toml").read_text())


@st.composite
def provisioning_bytes(draw) -> bytes:
    """A provisioning scenario: the paper's with 0-3 fields changed, or broken bytes."""
    base = json.loads(json.dumps(PAPER))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        section = draw(st.sampled_from(["", "objective", "latency", "channel", "quality", "state"]))
        table = base if not section else base.get(section)
        if not isinstance(table, dict):
            continue
        key = draw(st.sampled_from(sorted(table) + ["unknown_field"]))
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(st.one_of(any_value(), st.lists(st.sampled_from(EXTREME_FLOATS), min_size=2, max_size=3)))
    try:
        data = tomli_w.dumps(base).encode()
    except (TypeError, ValueError):
        data = b"name = \n"
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        data = draw(st.binary(min_size=1, max_size=200))
    return data


@fuzz_settings("provisioning_check")
@given(data=provisioning_bytes())
def test_provisioning_files_load_or_name_the_field(case_file, data):
    """Validation only (provisioning/scenario.py): the file loads with finite numbers, or the
    error is one line naming the file and the field."""
    from market.errors import ScenarioError
    from provisioning.scenario import load_provisioning_scenario

    path = case_file
    path.write_bytes(data)
    try:
        config = load_provisioning_scenario(path)
    except ScenarioError as exc:
        message = str(exc)
        event("provisioning refused")
        assert "\n" not in message and str(path) in message
        if not any(s in message for s in ("not valid TOML", "not UTF-8", "must be a table")):
            assert "field '" in message, message
    else:
        event("provisioning loaded")
        assert config.num_users >= 1
        assert all(math.isfinite(v) for v in _numbers(config.to_dict()))


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


# ----------------------------------------------------------------------------- argument lists
NUMBER_TOKENS = ["0", "-1", "1", "2", "3", "1.5", "1e308", "inf", "-inf", "nan", "1e-320", "9223372036854775807",
                 "9223372036854775808", "18446744073709551616", "abc", "", "0x10", "1_0", " 7", "-0"]
CHEAP_BAD = {  # flag -> values that must be refused before any work
    "--seed": ["-1", "-5", "9223372036854775808", "1.5", "abc", "", "nan"],
    "--best-of-k": ["0", "-3", "1.5", "x", "1025"],
    "--episodes": ["0", "-1", "1e3", "nan"],
    "--samples": ["0", "-2", "1e9", "abc"],
    "--steps": ["0", "-1", "1.5", "1e400"],
    "--device": ["gpu", "cuda:x", "", "tpu"],
}


def number_token():
    return st.one_of(st.sampled_from(NUMBER_TOKENS), st.integers(min_value=-(2**70), max_value=2**70).map(str),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


@st.composite
def argument_lists(draw) -> tuple[list[str], str]:
    """(argv, kind): a cheap command with random numbers, or an expensive one with one bad value."""
    kind = draw(st.sampled_from(["scenario new", "solve", "expensive", "junk"]))
    if kind == "scenario new":
        argv = ["scenario", "new", "--asps", draw(st.sampled_from(["1", "2", "0", "-1", "x", "1e3"])),
                "--mus", draw(st.sampled_from(["1", "3", "0", "-4", "2.5"])), "--seed", draw(number_token())]
        if draw(st.booleans()):
            argv += ["--bandwidth-model", draw(st.sampled_from(["linear", "shannon", "cubic"]))]
        if draw(st.booleans()):
            argv += ["--out", "@OUT@/new.toml"]
        return argv, kind
    if kind == "solve":
        argv = ["solve", draw(st.sampled_from(["scenarios/small.toml", "@OUT@/missing.toml", "scenarios"]))]
        if draw(st.booleans()):
            argv += ["--tolerance", draw(number_token())]
        if draw(st.booleans()):
            argv += ["--max-iterations", draw(st.one_of(st.sampled_from(["1", "5", "0", "-1"]), number_token()))]
        if draw(st.booleans()):
            argv += ["--solver", draw(st.sampled_from(["dual-perturbation", "nope", ""]))]
        argv += ["--quiet"] + (["--out", "@OUT@/r.json"] if draw(st.booleans()) else [])
        return argv, kind
    if kind == "expensive":
        command = draw(st.sampled_from([
            ["provision", "evaluate", "--policy", "d3pg"], ["provision", "train", "--agent", "d3pg"],
            ["run", "scenarios/small.toml"], ["backend", "measure"], ["provision", "compare"]]))
        allowed = {"provision": ["--seed", "--best-of-k", "--episodes", "--steps"], "run": ["--seed", "--samples",
                   "--steps", "--device"], "backend": ["--seed", "--samples", "--steps", "--device"]}[command[0]]
        if command[:2] == ["provision", "train"]:
            allowed = ["--steps"]
        if command[:2] == ["provision", "compare"]:
            allowed = ["--steps", "--episodes"]
        flag = draw(st.sampled_from(allowed))
        return [*command, flag, draw(st.sampled_from(CHEAP_BAD[flag]))], kind
    # (never a bare "sweep": that is a valid, minutes-long default sweep)
    words = draw(st.lists(st.sampled_from(["solve", "scenario", "check", "new", "--out", "--seed", "-1", "x", "--help",
                                            "--values", "--axis", "provision", "backend", "--version", "run", "--bogus"]),
                          max_size=4))
    return [w for w in words if w not in ("--help", "--version")] or ["--bogus"], kind


@fuzz_settings("arguments")
@given(argument_lists())
def test_argument_lists_run_or_are_refused_in_one_line(case):
    argv, kind = case
    folder = Path(tempfile.mkdtemp(prefix="fuzz-args-"))
    argv = [a.replace("@OUT@", str(folder)).replace("scenarios/", f"{ROOT}/scenarios/") for a in argv]
    cwd = os.getcwd()
    os.chdir(folder)  # anything written to a default path lands here and is checked
    try:
        code, out, err = run_cli(argv)
    finally:
        os.chdir(cwd)
    event(f"{kind}: exit {code}")
    try:
        assert "Traceback" not in err
        if kind == "expensive":
            assert code == 2 and out == "", (argv, code, err)
        assert code in (0, 1, 2), (argv, code)
        if code == 2:
            assert len(err.strip().splitlines()) == 1, (argv, err)
        if kind == "solve" and code in (0, 1) and "--out" in argv:
            status = json.loads((folder / "r.json").read_text())["status"]
            assert (status == "converged") == (code == 0)
        if kind == "scenario new" and "--out" in argv:
            written = folder / "new.toml"
            if code == 0:
                assert run_cli(["scenario", "check", str(written)])[0] == 0
            else:
                assert not written.exists()
        if code == 2:
            leftovers = [p.name for p in folder.iterdir()]
            assert leftovers == [], leftovers
    finally:
        _remove(folder)


# ----------------------------------------------------------------------------- solving extreme markets
@st.composite
def extreme_market(draw) -> bytes:
    """A small valid-looking market whose numbers are drawn log-uniformly over (and just past) the
    physical ranges of ``market.bounds``."""
    base = json.loads(json.dumps(BASES[draw(st.sampled_from([k for k in BASES if k[1] == 3]))]))

    past = draw(st.integers(min_value=0, max_value=4)) == 0  # one market in five has one value past a bound
    fields = [("asp", k) for k in ("seconds_per_token", "compute_capacity", "bandwidth_capacity", "compute_cost",
                                   "bandwidth_cost", "max_tokens")]
    fields += [("mu", k) for k in ("tokens_requested", "deadline_s", "payload_bits", "spectral_efficiency",
                                   "value_per_qoe")]
    past_field = draw(st.sampled_from(fields)) if past else None

    def pick(table: str, key: str, current: float) -> float:
        bound = MARKET_BOUNDS[f"{table}.{key}"]
        if (table, key) == past_field:
            return draw(st.sampled_from([float(bound.high) * 10.0, float(bound.low) / 10.0 if bound.low > 0 else -1.0]))
        choice = draw(st.sampled_from(["keep", "log", "log", "low", "high"]))
        if choice == "keep" or (bound.low <= 0 and choice != "log"):
            return current
        if choice == "low":
            return float(bound.low)
        if choice == "high":
            return float(bound.high)
        low = bound.low if bound.low > 0 else 1e-12
        exponent = draw(st.floats(min_value=math.log10(low), max_value=math.log10(bound.high)))
        return min(max(10.0 ** exponent, float(bound.low)), float(bound.high))

    for asp in base["asp"]:
        for key in ("seconds_per_token", "compute_capacity", "bandwidth_capacity", "compute_cost", "bandwidth_cost",
                    "max_tokens"):
            asp[key] = pick("asp", key, asp[key])
    for mu in base["mu"]:
        for key in ("tokens_requested", "deadline_s", "payload_bits", "spectral_efficiency"):
            mu[key] = pick("mu", key, mu[key])
        theta = pick("mu", "value_per_qoe", mu["value_per_qoe"])
        mu["value_per_qoe"] = theta
        mu["reward_max"] = min(mu["reward_max"], theta) if draw(st.booleans()) else theta
        mu["reward_min"] = min(mu["reward_min"], mu["reward_max"])
    if PROFILE == "nightly":  # the Shannon and quadratic variants root-find: up to 20 s per extreme market
        base["market"]["bandwidth_model"] = draw(st.sampled_from(["linear", "shannon"]))
        base["market"]["asp_cost"] = draw(st.sampled_from(["linear", "quadratic"]))
    return tomli_w.dumps(base).encode()


@fuzz_settings("solve")
@given(data=extreme_market())
def test_solve_certifies_labels_or_refuses(case_file, data):
    path = case_file
    path.write_bytes(data)
    result = path.parent / "result.json"
    result.unlink(missing_ok=True)
    code, out, err = run_cli(["solve", str(path), "--quiet", "--out", str(result), "--max-iterations", "300"])
    assert code in (0, 1, 2), (code, err)
    event(f"solve exit {code}" + (f": {err.split('field ')[-1].split(':')[0]}" if code == 2 else ""))
    if code == 2:
        assert_clean_refusal(code, out, err, file=str(path))
        assert not result.exists()
        return
    saved = json.loads(result.read_text())  # allow_nan=False on write: every number finite
    if code == 0:
        assert saved["status"] == "converged" and saved["certificate"]["passed"]
    else:
        assert saved["status"] != "converged"


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- findings, kept as examples
def test_nightly_finding_an_infinite_certificate_entry_is_written_as_null(tmp_path):
    """Found by the nightly solve fuzz: an extreme in-range Shannon market whose unfinished solve
    has an infinite KKT residual crashed the JSON writer (a traceback after solving). It must be
    written (null for the unbounded entry) and labelled not converged, exit 1."""
    scenario = Path(__file__).with_name("fuzz_finding_inf_certificate.toml")
    result = tmp_path / "r.json"
    code, out, err = run_cli(["solve", str(scenario), "--quiet", "--out", str(result), "--max-iterations", "1"])
    assert code == 1, err
    saved = json.loads(result.read_text())
    assert saved["status"] != "converged" and saved["certificate"]["passed"] is False
    assert saved["certificate"]["kkt_residual"] is None
