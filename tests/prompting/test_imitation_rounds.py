"""The imitation environment, the baselines, GAIL (slow smoke test) and service rounds."""
import math
import sys

import numpy as np
import pytest

from market.errors import UserError
from provisioning.prompting.imitation_env import (ConstantPolicy, PromptStrategyEnv, RandomStrategyPolicy,
                                                  StrategyTable, TrainConfig, _cells, evaluate_actions,
                                                  evaluate_expert, evaluate_policy_table, expert_trajectories,
                                                  keyword_embedding, train_gail)
from provisioning.prompting.rounds import (normal_fits, rounds_grid, rounds_needed)


def _synthetic_table(seed=0, requests=12, strategies=7, powers=3, images=4):
    """Scores where the best strategy depends on the prompt's object (so a policy can learn it)."""
    rng = np.random.default_rng(seed)
    raws = [f"A grassland, with a {o}" for o in ("ball", "box", "tree", "house", "star", "car")] * (requests // 6)
    scores = rng.uniform(2, 4, size=(requests, strategies, powers, images)).astype(np.float32)
    for j in range(requests):
        scores[j, 1 + j % 6] += 5.0
    return StrategyTable(scores, keyword_embedding(raws), np.linspace(0, 1, powers, dtype=np.float32),
                         np.full(requests, 7.5))


def test_env_follows_gymnasium_and_eq_14():
    from gymnasium.utils.env_checker import check_env

    table = _synthetic_table()
    env = PromptStrategyEnv(table, horizon=3, seed=1)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (7 + 12 + 1,) and np.all(obs[:7] == 0)
    total = 0
    for t in range(3):
        obs, reward, terminated, truncated, info = env.step(2)
        assert 0 <= reward <= 1 and math.isclose(reward, info["score"] / 10, rel_tol=1e-6)
        assert obs[2] == pytest.approx((t + 1) / 3)
        total += 1
    assert terminated and not truncated


def test_baselines_and_expert_on_a_table():
    table = _synthetic_table()
    expert = evaluate_expert(table)
    assert expert.fraction_of_expert == 1.0
    j, m = _cells(table)
    assert np.array_equal(table.expert_actions()[j, m], 1 + j % 6)
    rand = evaluate_policy_table(RandomStrategyPolicy(7, 0), table, 3)
    emp = evaluate_policy_table(ConstantPolicy(), table, 3)
    assert rand.mean_score < expert.mean_score and emp.mean_score < expert.mean_score
    # by hand: always strategy 6 is the best for 1 request in 6
    assert emp.fraction_of_expert == pytest.approx(
        table.scores[j, 6, m].mean() / table.scores[j, 1 + j % 6, m].mean(), rel=1e-6)
    assert evaluate_actions(table, 1 + j % 6).single_round_success == pytest.approx(
        float((table.scores[j, 1 + j % 6, m] >= 7.5).mean()))


def test_expert_trajectories_shape():
    pytest.importorskip("imitation")
    table = _synthetic_table()
    trajs = expert_trajectories(table, horizon=2)
    assert len(trajs) == 12 * 3
    assert trajs[0].obs.shape == (3, 20) and trajs[0].acts.shape == (2,)
    assert trajs[0].acts[0] == table.expert_actions()[0, 0]


def test_gail_without_imitation_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "imitation.algorithms.adversarial.gail", None)
    with pytest.raises(UserError, match="pip install --no-deps imitation"):
        train_gail(_synthetic_table(), TrainConfig(), 0)


@pytest.mark.slow
def test_gail_beats_random_on_the_render_dataset():
    """GAIL a few thousand steps on D built by the render test double; ~25 s on 2 cores."""
    import torch

    from provisioning.prompting.corpus import WorldPromptOptimizer
    from provisioning.prompting.dataset import DatasetConfig, RenderImageGenerator, build_dataset
    from provisioning.prompting.requests import JudgeScorer, sample_requests
    from provisioning.prompting.strategies import strategies

    torch.set_num_threads(1)
    dataset = build_dataset(sample_requests(12, seed=0), strategies()[:7], WorldPromptOptimizer(),
                            RenderImageGenerator(), JudgeScorer(), DatasetConfig(images=4), progress=False)
    table = StrategyTable.from_dataset(dataset, keyword_embedding)
    curve = []
    policy = train_gail(table, TrainConfig(total_timesteps=3072), seed=0,
                        monitor=lambda t, p: curve.append((t, evaluate_policy_table(p, table, 3).mean_score)))
    gail = evaluate_policy_table(policy, table, 3)
    assert [t for t, _ in curve] == [256 * (i + 1) for i in range(12)] and curve[-1][1] == gail.mean_score
    random = np.mean([evaluate_policy_table(RandomStrategyPolicy(7, s), table, 3).mean_score for s in range(5)])
    assert gail.mean_score > random


def test_rounds_needed_matches_brute_force():
    for p in (0.05, 0.3, 0.9):
        for n in (1, 3, 5):
            r = rounds_needed(p, n, 0.9)
            assert 1 - (1 - p) ** (n * r) >= 0.9
            assert r == 1 or 1 - (1 - p) ** (n * (r - 1)) < 0.9
    assert rounds_needed(0.0, 3) == math.inf and rounds_needed(1.0, 1) == 1


def test_rounds_grid_uses_normal_only_where_it_fits():
    rng = np.random.default_rng(0)
    normal = rng.normal(7.8, 0.5, 400)
    bimodal = np.concatenate([np.full(200, 2.0), np.full(200, 9.0)]) + rng.uniform(0, 0.1, 400)
    assert normal_fits(normal) and not normal_fits(bimodal)
    g = rounds_grid(normal)
    assert g.model == "normal" and g.rounds.shape == (11, 5)
    assert np.all(np.diff(g.rounds, axis=1) <= 0) and np.all(np.diff(g.rounds, axis=0) >= 0)
    b = rounds_grid(bimodal)
    assert b.model == "empirical" and b.single_round_share() == pytest.approx(2 / 5)
    # p = 1/2 at every threshold: one round needs 1 - 2^-n >= 0.9, i.e. n >= 4 (2 of 5 columns)


def test_split_half_expert_by_hand():
    from provisioning.prompting.imitation_env import split_half_expert

    scores = np.zeros((1, 2, 1, 4), dtype=np.float32)
    scores[0, 0, 0] = [9, 1, 9, 1]   # strategy 0: great on the even images, poor on the odd
    scores[0, 1, 0] = [5, 6, 5, 6]
    table = StrategyTable(scores, np.zeros((1, 1), np.float32), np.zeros(1, np.float32), np.array([7.5]))
    got = split_half_expert(table)
    assert got["chosen_on_other_half"] == 1.0 and got["hindsight"] == 6.0 and got["fraction"] == pytest.approx(1 / 6)


def test_criteria_and_claims_by_hand():
    from provisioning.prompting.experiment import claims, criteria

    def rec(mean, std=0.0, frac=None, success=0.0):
        return {"mean_score": {"mean": mean, "std": std}, "fraction_of_expert": {"mean": frac or mean / 8, "std": 0.01},
                "single_round_success": {"mean": success, "std": 0.0}}

    policies = {"gail": rec(7.4, 0.1, success=0.6), "empirical": rec(7.0, success=0.3), "random": rec(7.3, 0.1),
                "raw": rec(5.0, success=0.1), "expert": rec(8.0)}
    got = criteria(policies)
    assert got["gail_reaches_90_percent_of_expert"] and got["gail_fraction_of_expert"] == 7.4 / 8
    assert got["gail_vs_empirical"]["above_by_more_than_spread"]            # 0.4 > 0.1
    assert not got["gail_vs_random"]["above_by_more_than_spread"]           # 0.1 < 0.2
    rounds = {"gail": {"single_round_share": 19 / 55}, "raw": {"single_round_share": 3 / 55},
              "empirical": {"single_round_share": 0.0}}
    c = claims(policies, rounds)
    assert c["gail_over_raw"]["single_round_share"] == [19, 3]
    assert c["gail_over_raw"]["share_ratio"] == pytest.approx(19 / 3)
    assert c["gail_over_empirical"]["share_ratio"] is None                  # undefined, not infinite
    assert c["gail_over_empirical"]["per_image_success_ratio"] == pytest.approx(2.0)
