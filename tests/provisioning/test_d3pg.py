"""D3PG: the diffusion actor's sampler, the TD target, acting vs learning, files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from market.errors import MissingArtifactError, UserError
from provisioning.agents.d3pg import (
    D3PGConfig,
    D3PGLearner,
    D3PGPolicy,
    DiffusionActor,
    DiffusionSchedule,
    ReplayBuffer,
    vp_beta_schedule,
)

torch.set_num_threads(1)

SMALL = dict(state_hidden=32, trunk_hidden=32, critic_hidden=32, batch_size=16, warmup_steps=10)


def small_config(**overrides) -> D3PGConfig:
    return D3PGConfig(**{**SMALL, **overrides})


def test_vp_schedule_reaches_noise_in_six_steps():
    betas = vp_beta_schedule(6)
    alpha_bar = np.cumprod(1 - betas)
    assert alpha_bar[-1] < 0.01
    assert np.all(np.diff(betas) > 0) and np.all((betas > 0) & (betas < 1))
    # closed form: alpha_bar_T = exp(-(beta_min + beta_max) / 2)
    assert alpha_bar[-1] == pytest.approx(np.exp(-(0.1 + 10.0) / 2), rel=1e-12)


def test_reverse_step_matches_diffusers_ddpm_scheduler():
    """Our hand-written posterior step equals diffusers' DDPMScheduler.step (same betas,
    epsilon prediction, x0 clipped to [-1, 1], fixed-small variance, same noise)."""
    from diffusers import DDPMScheduler

    betas = vp_beta_schedule(6)
    ours = DiffusionSchedule(betas)
    ref = DDPMScheduler(
        num_train_timesteps=6,
        trained_betas=betas.tolist(),
        clip_sample=True,
        clip_sample_range=1.0,
        prediction_type="epsilon",
        variance_type="fixed_small",
    )
    ref.set_timesteps(6)
    assert [int(t) for t in ref.timesteps] == [5, 4, 3, 2, 1, 0]

    def fake_eps(x, t):  # any deterministic "denoiser"
        return 0.9 * x + 0.05 * (t + 1) * torch.sin(3 * x)

    gen_ours, gen_ref = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x_ours = torch.randn(5, 4, generator=gen_ours)
    x_ref = torch.randn(5, 4, generator=gen_ref)
    for t in range(5, -1, -1):
        noise = torch.randn(5, 4, generator=gen_ours) if t > 0 else None
        x_ours = ours.step(x_ours, t, fake_eps(x_ours, t), noise)
        x_ref = ref.step(fake_eps(x_ref, t), t, x_ref, generator=gen_ref).prev_sample
        torch.testing.assert_close(x_ours, x_ref, rtol=1e-5, atol=1e-5)
    assert x_ours.abs().max() <= 1.0 + 1e-6


def test_actor_output_shape_range_and_seeded_reproducibility():
    actor = DiffusionActor(5, 4, small_config())
    obs = torch.randn(7, 5)
    a1 = actor(obs, generator=torch.Generator().manual_seed(1))
    a2 = actor(obs, generator=torch.Generator().manual_seed(1))
    a3 = actor(obs, generator=torch.Generator().manual_seed(2))
    assert a1.shape == (7, 4)
    assert torch.all(a1.abs() <= 1.0)
    torch.testing.assert_close(a1, a2)
    assert not torch.allclose(a1, a3)


def test_actor_loss_reaches_the_denoiser_through_the_whole_chain():
    torch.manual_seed(0)
    actor = DiffusionActor(5, 4, small_config())
    obs = torch.randn(64, 5)
    action, _ = actor.sample(obs, generator=torch.Generator().manual_seed(0))
    action.sum().backward()
    grads = [p.grad for p in actor.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    first_layer = actor.denoiser.state_encoder[0].weight.grad
    assert first_layer is not None and float(first_layer.abs().sum()) > 0


def _batch(n: int, obs_dim: int, action_dim: int, terminated: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {
        "obs": torch.randn(n, obs_dim, generator=g),
        "action": torch.rand(n, action_dim, generator=g) * 2 - 1,
        "reward": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, obs_dim, generator=g),
        "terminated": torch.full((n,), terminated),
    }


def test_td_target_of_terminated_transitions_is_the_reward_only():
    learner = D3PGLearner(5, 4, small_config(reward_scale=2.0), seed=0)
    batch = _batch(8, 5, 4, terminated=1.0)
    target = learner.td_target(batch["reward"], batch["next_obs"], batch["terminated"])
    torch.testing.assert_close(target, 2.0 * batch["reward"])


def test_td_target_bootstraps_when_not_terminated_and_carries_no_exploration_noise():
    base = small_config(reward_scale=1.0, gamma=0.9)
    batch = _batch(8, 5, 4, terminated=0.0)
    learner = D3PGLearner(5, 4, base, seed=0)
    target = learner.td_target(batch["reward"], batch["next_obs"], batch["terminated"])
    assert not torch.allclose(target, batch["reward"])  # the bootstrap term is there
    # the same learner with a huge exploration sigma gives exactly the same target: the
    # target action is a plain sample of the target actor (its own generator), no noise
    noisy = D3PGLearner(5, 4, small_config(reward_scale=1.0, gamma=0.9, exploration_sigma=5.0), seed=0)
    noisy_target = noisy.td_target(batch["reward"], batch["next_obs"], batch["terminated"])
    torch.testing.assert_close(target, noisy_target)
    # and it equals r + gamma * min Q'(s', actor'(s')) computed by hand
    check = D3PGLearner(5, 4, base, seed=0)
    with torch.no_grad():
        next_obs = check.normalizer(batch["next_obs"])
        next_action = check.actor_target(next_obs, generator=torch.Generator().manual_seed(0 + 2))
        expected = batch["reward"] + 0.9 * check.critic_target.min_q(next_obs, next_action)
    torch.testing.assert_close(target, expected)


def test_replay_buffer_keeps_terminated_not_truncated():
    buffer = ReplayBuffer(2, 1, capacity=4)
    buffer.add([0, 0], [0.5], 1.0, [1, 1], True)
    buffer.add([1, 1], [0.1], 2.0, [2, 2], False)
    state = buffer.state()
    assert set(state) == {"obs", "action", "reward", "next_obs", "terminated", "position"}
    assert state["terminated"].tolist() == [1.0, 0.0]


def test_update_changes_critic_and_actor_and_logs_metrics():
    learner = D3PGLearner(5, 4, small_config(), seed=0)
    before_actor = [p.detach().clone() for p in learner.actor.parameters()]
    before_critic = [p.detach().clone() for p in learner.critic.parameters()]
    metrics = learner.update(_batch(16, 5, 4, terminated=1.0))
    assert {"critic_loss", "actor_loss", "q1_mean", "q2_mean", "saturated_share", "x0_excess"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(before_actor, learner.actor.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_critic, learner.critic.parameters()))


def test_exploration_noise_only_when_asked():
    learner = D3PGLearner(3, 2, small_config(), seed=0)
    obs = np.zeros(3, dtype=np.float32)
    plain = learner.policy.act(obs, generator=torch.Generator().manual_seed(9))
    again = learner.policy.act(obs, generator=torch.Generator().manual_seed(9))
    noisy = learner.policy.act(obs, exploration_sigma=0.5, generator=torch.Generator().manual_seed(9))
    np.testing.assert_array_equal(plain, again)
    assert not np.allclose(plain, noisy)
    assert np.all(np.abs(noisy) <= 1.0)


def test_policy_save_load_round_trip(tmp_path):
    learner = D3PGLearner(5, 4, small_config(), seed=1)
    learner.fit_statistics(np.random.default_rng(0).normal(3.0, 2.0, size=(50, 5)), np.arange(50.0))
    learner.update(_batch(16, 5, 4, terminated=1.0))
    policy = learner.export_policy(seed=42)
    path = policy.save(tmp_path / "p.safetensors", extra_metadata={"steps": 7})
    loaded = D3PGPolicy.load(path, seed=42)
    assert loaded.metadata == {"steps": 7}
    assert loaded.config == policy.config
    obs = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    np.testing.assert_array_equal(policy.act(obs), loaded.act(obs))
    policy.reseed(3)
    loaded.reseed(3)
    np.testing.assert_array_equal(policy.act_best_of_k(obs, k=4), loaded.act_best_of_k(obs, k=4))


def test_policy_load_errors_are_clear(tmp_path):
    with pytest.raises(MissingArtifactError, match="train one"):
        D3PGPolicy.load(tmp_path / "absent.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="bad.safetensors"):
        D3PGPolicy.load(bad)


def test_best_of_k_picks_the_critic_argmax():
    learner = D3PGLearner(3, 2, small_config(), seed=0)
    policy = learner.export_policy(seed=0)
    obs = np.zeros((1, 3), dtype=np.float32)
    chosen = policy.act_best_of_k(obs, k=8, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        candidates = policy.actor(torch.zeros(8, 3), generator=torch.Generator().manual_seed(4))
        scores = policy.critic.min_q(torch.zeros(8, 3), candidates)
    np.testing.assert_allclose(chosen[0], candidates[int(scores.argmax())].numpy())


@pytest.mark.parametrize(
    "field, value",
    [("denoising_steps", 0), ("actor_lr", -1.0), ("batch_size", 2.5), ("clamp_gradient", "soft"), ("tau", 2.0)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(UserError, match=field):
        D3PGConfig(**{field: value})


def test_config_dict_round_trip_and_unknown_keys():
    config = D3PGConfig(actor_lr=3e-4)
    assert D3PGConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match="unknown"):
        D3PGConfig.from_dict({"actor_learning_rate": 1.0})


def test_fast_inference_path_equals_the_training_forward():
    learner = D3PGLearner(5, 4, small_config(), seed=2)
    learner.update(_batch(16, 5, 4, terminated=1.0))
    frozen = learner.export_policy(seed=0)
    assert frozen.frozen and not learner.policy.frozen
    obs = np.random.default_rng(3).normal(size=(9, 5)).astype(np.float32)
    fast = frozen.act(obs, generator=torch.Generator().manual_seed(8))
    slow = learner.policy.act(obs, generator=torch.Generator().manual_seed(8))
    np.testing.assert_allclose(fast, slow, atol=1e-5)
