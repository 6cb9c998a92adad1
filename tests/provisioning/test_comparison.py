"""provisioning/comparison.py: the files behind the README's provisioning figures, its claims,
its warnings, and plots that never hide a policy."""
from __future__ import annotations

import csv
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from provisioning.comparison import _claims, _relative, _y_axis, run_comparison, write_plots  # noqa: E402
from provisioning.evaluation import format_spread, spread  # noqa: E402
from provisioning.scenario import default_provisioning_scenario_path  # noqa: E402
from provisioning.training import tuned_d3pg_config  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """One seed of D3PG for 48 steps (shorter than its 64-step warm-up) on the default scenario."""
    out = tmp_path_factory.mktemp("compare")
    tiny = tuned_d3pg_config(state_hidden=16, trunk_hidden=16, critic_hidden=16, batch_size=16, actor_batch_size=8,
                             warmup_steps=64)
    summary = run_comparison(default_provisioning_scenario_path(), out, agents=["d3pg"], seeds=1, steps=48, episodes=6,
                             eval_every=24, eval_states=4, progress=False, d3pg_config=tiny)
    return out, summary


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_and_rows(comparison):
    out, summary = comparison
    assert json.loads((out / "summary.json").read_text())["policies"] == summary["policies"]
    curves = _rows(out / "curves.csv")
    assert [(r["agent"], int(r["step"])) for r in curves] == [("d3pg", 24), ("d3pg", 48)]
    converged = _rows(out / "converged.csv")
    assert {r["policy"] for r in converged} == {"oracle", "static", "random", "d3pg", "d3pg-best-of-k"}
    oracle = next(r for r in converged if r["policy"] == "oracle")
    assert float(oracle["fraction_of_oracle"]) == pytest.approx(1.0, abs=1e-12)
    static = next(r for r in converged if r["policy"] == "static")
    assert float(static["fraction_of_oracle"]) < 1.0 and float(static["mean_trials"]) == pytest.approx(4.0)
    decisions = _rows(out / "decisions.csv")
    assert len(decisions) == 3 * 4  # the paper's 3-user example state: oracle, static, random, d3pg
    assert {r["policy"] for r in decisions} == {"oracle", "static", "random", "d3pg"}
    for row in decisions:
        assert 1 <= int(row["trials"]) and 0.0 <= float(row["power_share"]) <= 1.0 + 1e-12
    oracle_reward = {float(r["state_reward"]) for r in decisions if r["policy"] == "oracle"}
    assert all(float(r["state_reward"]) <= min(oracle_reward) + 1e-9 for r in decisions)


def test_warnings_say_what_misleads(comparison):
    _, summary = comparison
    text = " ".join(summary["warnings"])
    assert "never learned" in text and "64 random warm-up" in text
    assert "n=1" in text
    assert summary["policies"]["d3pg"]["fraction_of_oracle"]["n"] == 1
    assert summary["policies"]["d3pg"]["fraction_of_oracle"]["std"] is None  # no spread from one seed


def test_plots_are_written(comparison):
    out, summary = comparison
    write_plots(out, summary)
    for name in ("learning_curves.png", "converged_utility.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_policy_far_below_zero_is_shown_on_a_symlog_axis_not_cut():
    fig, ax = plt.subplots()
    assert _y_axis(ax, [0.9, 0.2, -0.3], 1.05) is None and ax.get_yscale() == "linear"
    fig2, ax2 = plt.subplots()
    note = _y_axis(ax2, [0.9, -9.5], 1.05)
    assert ax2.get_yscale() == "symlog" and ax2.get_ylim()[0] <= -9.5 and "symmetric-log" in note
    plt.close(fig)
    plt.close(fig2)


def test_write_plots_returns_the_symlog_note(tmp_path):
    summary = {
        "agents": ["d3pg"], "seeds": 2,
        "curves": [["d3pg", 0, 100, -9.0, -1.0], ["d3pg", 0, 200, -8.0, -1.0], ["d3pg", 1, 100, -10.0, -1.0],
                   ["d3pg", 1, 200, -7.0, -1.0]],
        "policies": {name: {"fraction_of_oracle": spread(values)} for name, values in
                     (("oracle", [1.0]), ("d3pg", [-9.0, -11.0]), ("static", [0.65]), ("random", [0.2, 0.21]))},
    }
    notes = write_plots(tmp_path, summary)
    assert len(notes) == 2 and all("symmetric-log" in n for n in notes)


def test_claims_and_relative_improvement_by_hand():
    assert _relative(1.5, 1.0) == pytest.approx(0.5) and _relative(-0.5, -1.0) == pytest.approx(0.5)
    assert np.isnan(_relative(1.0, 0.0))
    policies = {
        "d3pg": {"mean_utility": {"mean": 3.0}, "mean_qoe": {"mean": 0.2}, "fraction_of_oracle": {"mean": 0.9}},
        "sac": {"mean_utility": {"mean": 2.0}, "mean_qoe": {"mean": 0.1}, "fraction_of_oracle": {"mean": 0.95}},
        "oracle": {"mean_utility": {"mean": 3.3}, "mean_qoe": {"mean": 0.3}, "fraction_of_oracle": {"mean": 1.0}},
    }
    claims = _claims(policies)
    assert claims["d3pg_over_sac_utility"] == pytest.approx(0.5) and claims["d3pg_over_sac_qoe"] == pytest.approx(1.0)
    assert claims["d3pg_above_every_baseline_mean"] is False  # SAC's 0.95 beats D3PG's 0.9


def test_format_spread_says_n_1_has_no_spread():
    assert format_spread(spread([0.5])) == "0.5000 (n=1, no spread)"
    assert format_spread(spread([0.4, 0.6])) == "0.5000 +/- 0.1414 (n=2, min 0.4000)"
