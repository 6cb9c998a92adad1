"""Prompt engineering into provisioning: D's quality per strategy, trials needed, and `incentive run`."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from pathlib import Path

from incentive.cli import main
from market.errors import UserError
from provisioning.prompting.dataset import DemonstrationDataset
from provisioning.prompting.requests import Request
from provisioning.prompting.service import (quality_model_from_dataset, strategy_choices, success_probability,
                                            trials_for_confidence, unsaid_share)

SCENARIO = str(Path(__file__).resolve().parents[2] / "scenarios" / "small.toml")
EASY = Request("A city, with a car", "A city at night, with a blue car")                       # 2 of 4 unsaid
HARD = Request("A forest, with a tree", "A forest in daylight, with two small green trees")   # 4 of 6 unsaid


def _synthetic(mu=(1.5, 1.0), kappa=(3.0, 6.0), spread=0.2, images=400, seed=0) -> DemonstrationDataset:
    """D whose strategy-2 log scores are exactly mu - kappa BER + spread * z (other strategies lower)."""
    rng = np.random.default_rng(seed)
    ber = np.array([0.1, 0.01, 0.0002])
    requests = [EASY, HARD]
    scores = np.zeros((2, 3, 3, images))
    for j in range(2):
        for m, b in enumerate(ber):
            z = rng.standard_normal(images)
            z = (z - z.mean()) / z.std(ddof=1)
            scores[j, 2, m] = np.exp(mu[j] - kappa[j] * b + spread * z)
            scores[j, 0, m] = scores[j, 2, m] * 0.5
            scores[j, 1, m] = scores[j, 2, m] * 0.8
    return DemonstrationDataset(requests, ["raw", "a", "b"], np.array([0.001, 0.01, 0.1]), ber,
                                np.full((2, 3), ""), np.full((2, 3), ""), [{}, {}], scores.astype(np.float64), {})


def test_unsaid_share_counts_what_the_raw_prompt_leaves_out():
    assert unsaid_share(EASY) == pytest.approx(0.5)
    assert unsaid_share(HARD) == pytest.approx(4 / 6)


def test_fit_recovers_mean_spread_and_ber_sensitivity_per_difficulty_group():
    d = _synthetic()
    fit = quality_model_from_dataset(d, strategy_choices(d, "strategy:2"), "strategy:2")
    m = fit.model
    assert m.difficulty == (0.0, 1.0)
    assert np.allclose(m.mean_log_score, (1.5, 1.0), atol=1e-9)
    assert np.allclose(m.ber_sensitivity, (3.0, 6.0), atol=1e-9)
    assert np.allclose(m.std_log_score, (0.2, 0.2), rtol=1e-9)
    raw = quality_model_from_dataset(d, strategy_choices(d, "raw"), "raw").model
    assert np.allclose(np.array(m.mean_log_score) - np.array(raw.mean_log_score), math.log(2.0))
    assert fit.strategy_share == [0.0, 0.0, 1.0]


def test_policy_choices():
    d = _synthetic()
    assert np.all(strategy_choices(d, "raw") == 0) and np.all(strategy_choices(d, "strategy:1") == 1)
    assert np.all(strategy_choices(d, "expert") == 2)          # the best in hindsight
    assert np.all(strategy_choices(d, "empirical") == 2)       # strategy 6 where D has it, else the last
    for bad in ("strategy:9", "strategy:x", "greedy", "missing.zip"):
        with pytest.raises(UserError):
            strategy_choices(d, bad)


def test_a_trained_policy_file_chooses_per_cell(tmp_path):
    from stable_baselines3 import PPO

    from provisioning.prompting.imitation_env import PromptStrategyEnv, StrategyTable, keyword_embedding

    d = _synthetic(images=4)
    PPO("MlpPolicy", PromptStrategyEnv(StrategyTable.from_dataset(d, keyword_embedding)), n_steps=64, seed=0,
        device="cpu").save(tmp_path / "gail-seed0.zip")
    choices = strategy_choices(d, str(tmp_path / "gail-seed0.zip"))
    assert choices.shape == (2, 3) and set(choices.ravel()) <= {0, 1, 2}
    fewer = DemonstrationDataset(d.requests, ["raw", "a"], d.powers_w, d.ber, d.prompts[:, :2],
                                 d.negative_prompts[:, :2], d.corpora, d.scores[:, :2], {})
    with pytest.raises(UserError, match="observations"):  # a policy trained on another D's shape
        strategy_choices(fewer, str(tmp_path / "gail-seed0.zip"))


def test_success_probability_and_trials_match_the_lognormal_model_by_sampling():
    d = _synthetic()
    model = quality_model_from_dataset(d, strategy_choices(d, "strategy:2")).model
    p = success_probability(model, 0.0, 4.3, 0.01)
    draws = np.exp(1.5 - 3.0 * 0.01 + 0.2 * np.random.default_rng(1).standard_normal(200_000))
    assert p == pytest.approx(np.mean(draws >= 4.3), abs=0.005)
    n = trials_for_confidence(p, 0.9)
    assert 1 - (1 - p) ** n >= 0.9 > 1 - (1 - p) ** (n - 1)
    assert math.isinf(trials_for_confidence(0.0)) and trials_for_confidence(1.0) == 1
    assert p == pytest.approx(stats.norm.sf(math.log(4.3), 1.5 - 0.03, 0.2))


@pytest.fixture(scope="module")
def render_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("pe") / "D.npz"
    assert main(["prompts", "dataset", "--out", str(path), "--count", "6", "--images", "2", "--quiet",
                 "--scorer", "big-five:GA1"]) == 0
    return path


def test_incentive_run_serves_users_with_and_without_prompt_engineering(tmp_path, capsys, render_dataset):
    out = tmp_path / "run"
    code = main(["run", SCENARIO, "--out", str(out), "--quick", "--provision", "oracle",
                 "--no-progress", "--prompt-engineering", str(render_dataset), "--prompt-policy", "expert"])
    assert code == 0
    assert "prompt engineering (expert" in capsys.readouterr().out
    data = json.loads((out / "result.json").read_text())
    pe = data["prompt_engineering"]
    assert pe["policy"] == "expert" and len(pe["users"]) == len(data["users"])
    raw_fit, eng_fit = pe["fits"]["raw"], pe["fits"]["engineered"]
    assert raw_fit["strategy_share"][0] == 1.0
    # the hindsight expert's per-trial quality is at least the raw prompts' in every group
    for a, b in zip(raw_fit["groups"], eng_fit["groups"]):
        assert b["mean_score"] >= a["mean_score"]
    for user in pe["users"]:
        for variant in ("raw", "engineered"):
            v = user[variant]
            assert 0.0 <= v["success_per_trial"] <= 1.0 and v["trials"] >= 1
    s = pe["summary"]
    assert s["users"] == len(data["users"])
    assert s["expected_qoe"]["difference"] == pytest.approx(s["expected_qoe"]["engineered"] - s["expected_qoe"]["raw"])


@pytest.mark.parametrize("policy, message", [("greedy", "prompt policy"), ("strategy:12", "strategy must be")])
def test_incentive_run_rejects_a_bad_prompt_policy_before_any_work(tmp_path, capsys, render_dataset, policy, message):
    out = tmp_path / "run"
    code = main(["run", SCENARIO, "--out", str(out), "--quick", "--provision", "oracle",
                 "--prompt-engineering", str(render_dataset), "--prompt-policy", policy])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and not out.exists()


def test_incentive_run_rejects_a_file_that_is_not_a_dataset(tmp_path, capsys):
    bad = tmp_path / "D.npz"
    bad.write_bytes(b"nope")
    assert main(["run", SCENARIO, "--out", str(tmp_path / "o"), "--quick", "--provision", "oracle",
                 "--prompt-engineering", str(bad)]) == 2
    assert "not a demonstration dataset" in capsys.readouterr().err
