"""Denoising learners on the shared training scaffolding: run folders, Ctrl-C/SIGTERM and exact resume,
the cache fill over the key space, and the comparison's JSON feeding the figures (rendering test double)."""
import json
import os
import signal

import numpy as np
import pytest
import torch

from provisioning.denoising.learning import DenoiseProblem, DenoiseValidation, train_learner_run
from provisioning.denoising.problem import DenoiseEnv, draw_state, key_space, optimum, reachable_ber_levels

SMALL = dict(state_hidden=32, trunk_hidden=32, critic_hidden=32)


@pytest.fixture()
def problem(tiny):
    config, users, table, _ = tiny
    return DenoiseProblem(config, users[:2], users[2:], table)


def _run(problem, tmp_path, name, **kwargs):
    from provisioning.agents.registry import get

    learner = get("gddpg").make_config(warmup_steps=10, batch_size=16, actor_batch_size=8, **SMALL)
    return train_learner_run(problem, "gddpg", 1, 60, tmp_path / name, eval_every=20, eval_states=2,
                             learner_config=learner, validation=DenoiseValidation(problem, 2), **kwargs)


def _actor(run_dir):
    from provisioning.agents.d3pg import D3PGPolicy

    return D3PGPolicy.load(run_dir / "policy.safetensors").actor.state_dict()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_gddpg_run_resumes_to_the_uninterrupted_result(problem, tmp_path, monkeypatch, signum):
    reference = _run(problem, tmp_path, "reference")
    assert reference.finished and [c["step"] for c in reference.curve] == [20, 40, 60]
    assert json.loads((tmp_path / "reference" / "train_config.json").read_text())["scenario"] == problem.identity()
    calls = {"n": 0}
    original = DenoiseEnv.step

    def step_then_signal(self, action):
        calls["n"] += 1
        if calls["n"] == 33:
            os.kill(os.getpid(), signum)
        return original(self, action)

    monkeypatch.setattr(DenoiseEnv, "step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        _run(problem, tmp_path, "interrupted")
    progress = json.loads((tmp_path / "interrupted" / "progress.json").read_text())
    assert progress["steps_done"] == 33 and not progress["finished"]
    monkeypatch.setattr(DenoiseEnv, "step", original)
    resumed = _run(problem, tmp_path, "interrupted", resume=True)
    assert resumed.finished and resumed.steps_done == 60
    for key, value in _actor(tmp_path / "reference").items():
        torch.testing.assert_close(value, _actor(tmp_path / "interrupted")[key], rtol=0, atol=0)
    timing = {"wall_seconds", "seconds_per_step"}
    assert [{k: v for k, v in c.items() if k not in timing} for c in resumed.curve] == [
        {k: v for k, v in c.items() if k not in timing} for c in reference.curve]


def test_a_run_of_another_problem_is_not_resumed(problem, tmp_path, tiny):
    from market.errors import UserError

    _run(problem, tmp_path, "run")
    config, users, table, _ = tiny
    other = DenoiseProblem(config, users[1:], users[:1], table)  # other training users
    with pytest.raises(UserError, match="scenario"):
        _run(other, tmp_path, "run", resume=True)


def test_fill_covers_every_key_a_state_can_ask_for(problem, tmp_path):
    from provisioning.denoising.generation import GenerationCache, RenderingGenerator
    from provisioning.denoising.problem import QoETable

    config = problem.config
    keys = key_space(config, problem.train_users)
    bers = reachable_ber_levels(config)
    positive = sum(1 for t in config.t0_grid if t > 0)
    n = len(problem.train_users)
    assert len(keys) == config.noise_seeds * len(config.tk_grid) * (n + n * n * positive * len(bers))
    assert all(k.server_prompt == "" and k.ber == 0.0 for k in keys if k.t0 == 0)
    cache = GenerationCache(RenderingGenerator(), tmp_path / "filled")
    counters = cache.fill(keys)
    assert counters["generated"] == len(keys) and cache.disk_bytes() > 0
    assert cache.fill(keys)["generated"] == 0  # a second fill generates nothing
    table = QoETable(config, cache, problem.table.judge)
    for seed in range(4):  # the optimum looks up every (t0, t_k, power) of a state's devices
        optimum(config, table, draw_state(config, problem.train_users, seed))
    stats = table.stats()
    assert stats["generated_by_lookups"] == 0 and stats["share_of_lookups_without_generation"] == 1.0
    assert 0 < stats["lazy_share_without_generation"] < 1


def test_comparison_json_feeds_figures_11_to_14(problem, tmp_path):
    from provisioning.denoising import figures
    from provisioning.denoising.runs import CompareConfig, compare

    result = compare(problem, CompareConfig(policies=("gddpg", "random", "optimum"), seeds=2, train_steps=24,
                                            held_out_states=2, warmup_steps=6, eval_every=12, eval_states=2),
                     tmp_path / "runs")
    assert (tmp_path / "runs" / "gddpg" / "seed_1" / "result.json").is_file()
    row = result["policies"]["gddpg"]
    assert [len(c) for c in row["curves"]] == [2, 2] and len(row["decisions"]) == 2
    assert result["policies"]["optimum"]["fraction_of_optimum"]["mean"] == pytest.approx(1.0)
    for name in ("gddpg", "random"):
        assert all(d["reward"] <= b["reward"] + 1e-9 for d, b in
                   zip(result["policies"][name]["decisions"][0], result["policies"]["optimum"]["decisions"][0]))
    evaluation = json.loads(json.dumps({"problem": problem.identity(), **result}))
    written = [figures.fig11(evaluation, tmp_path / "fig"), figures.fig12(evaluation, tmp_path / "fig")]
    written += figures.fig13_14(problem, evaluation, tmp_path / "fig")
    assert all(p.is_file() and p.stat().st_size > 1000 for p in written)
    marked = json.loads((tmp_path / "fig" / "fig13_qoe_steps.json").read_text())
    grid = np.array(marked["devices"][0]["qoe"])
    assert grid.shape == (len(problem.config.t0_grid), len(problem.config.tk_grid)) and np.all((grid >= 0) & (grid <= 1))


def _selecting_run(problem, tmp_path, name, **kwargs):
    from provisioning.agents.registry import get

    learner = get("gddpg").make_config(warmup_steps=10, batch_size=16, actor_batch_size=8, **SMALL)
    validation = DenoiseValidation(problem, 2, selection_states=3)
    return validation, train_learner_run(problem, "gddpg", 1, 60, tmp_path / name, eval_every=20, eval_states=2,
                                         learner_config=learner, validation=validation, select_best=True, **kwargs)


def test_select_best_keeps_the_policy_of_the_best_selection_score_on_training_users(problem, tmp_path):
    from provisioning.agents.registry import get
    from provisioning.evaluation import sampling_seed

    validation, result = _selecting_run(problem, tmp_path, "run")
    train_names = {u.name for u in problem.train_users}
    assert validation.selection_states and all({u.name for u in s.users} <= train_names for s in validation.selection_states)
    scores = [c["selection_fraction"] for c in result.curve]
    assert len(scores) == 3 and result.best["step"] == result.curve[int(np.argmax(scores))]["step"]
    assert result.best["selection_fraction"] == pytest.approx(max(scores))
    kept = get("gddpg").load_policy(result.best_dir, seed=sampling_seed(1))
    again = validation.evaluate(kept)  # the kept file acts as the evaluated policy did
    assert again.selection_fraction == pytest.approx(result.best["selection_fraction"], abs=1e-12)
    assert json.loads((result.run_dir / "result.json").read_text())["best"] == result.best


def test_select_best_survives_an_interrupted_run(problem, tmp_path, monkeypatch):
    _, reference = _selecting_run(problem, tmp_path, "reference")
    calls = {"n": 0}
    original = DenoiseEnv.step

    def step_then_signal(self, action):
        calls["n"] += 1
        if calls["n"] == 45:  # after the evaluations at 20 and 40
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, action)

    monkeypatch.setattr(DenoiseEnv, "step", step_then_signal)
    with pytest.raises(KeyboardInterrupt):
        _selecting_run(problem, tmp_path, "interrupted")
    assert json.loads((tmp_path / "interrupted" / "progress.json").read_text())["best"]["step"] in (20, 40)
    monkeypatch.setattr(DenoiseEnv, "step", original)
    _, resumed = _selecting_run(problem, tmp_path, "interrupted", resume=True)
    assert resumed.best == reference.best
    for key, value in _actor(tmp_path / "reference" / "best").items():
        torch.testing.assert_close(value, _actor(tmp_path / "interrupted" / "best")[key], rtol=0, atol=0)


def test_a_comparison_with_select_best_scores_the_kept_policy(problem, tmp_path):
    from provisioning.denoising.runs import CompareConfig, compare

    cfg = CompareConfig(policies=("gddpg",), seeds=1, train_steps=24, held_out_states=2, warmup_steps=6,
                        eval_every=12, eval_states=2, select_best=True, selection_states=2)
    result = compare(problem, cfg, tmp_path / "runs")
    row = result["policies"]["gddpg"]
    assert row["selected"][0]["step"] in (12, 24) and "selection_fraction" in row["curves"][0][0]
    assert result["model_selection"]["selection_states"] == 2
    assert (tmp_path / "runs" / "gddpg" / "seed_0" / "best" / "policy.safetensors").is_file()
    last = row["last_policy"]["fraction_of_optimum"]
    assert last["n"] == 1 and last["mean"] <= 1.0 + 1e-9
    if row["selected"][0]["step"] == 24:  # the kept policy is the last one: same decisions, same score
        assert last["mean"] == pytest.approx(row["fraction_of_optimum"]["mean"])


def test_problem_identity_keeps_older_run_folders_and_tells_the_decodings_apart(tiny):
    import hashlib
    import json
    from dataclasses import asdict, replace

    from provisioning.denoising.learning import DenoiseProblem

    config, users, table, _ = tiny
    grid = DenoiseProblem(config, users[:2], users[2:], table)
    within = DenoiseProblem(replace(config, action_decoding="within-budgets"), users[:2], users[2:], table)
    steps = DenoiseProblem(replace(config, action_decoding="server-steps"), users[:2], users[2:], table)
    assert len({grid.identity(), within.identity(), steps.identity()}) == 3
    # the default decoding is not part of the digest, so folders made before the option still resume
    older = {k: v for k, v in asdict(config).items() if k != "action_decoding"}
    people = [[u.name, u.prompt, list(u.personality.vector())] for u in users] + [2]
    digest = hashlib.sha256(json.dumps({"config": older, "users": people}, sort_keys=True, default=list).encode())
    assert grid.identity().endswith(digest.hexdigest()[:12])


def test_local_policy_runs_every_device_to_its_budget_without_server_steps(tiny):
    from dataclasses import replace

    from provisioning.denoising.learning import LocalOnlyPolicy, decide
    from provisioning.denoising.runs import CompareConfig, compare

    config, users, table, _ = tiny
    config = replace(config, device_budget=(2.0, 6.0, 9.0))
    problem = DenoiseProblem(config, users[:2], users[2:], table)
    for seed in range(6):
        state = draw_state(config, users, seed)
        alloc, result = decide(problem, LocalOnlyPolicy(config), state)
        assert result.t0 == 0 and result.tk.tolist() == state.device_budget.tolist()  # budgets sit on the t_k grid here
        assert alloc.power_index == (0, 0) and result.device_excess.sum() == 0
    report = compare(problem, CompareConfig(policies=("local", "optimum"), seeds=3, held_out_states=3))
    local = report["policies"]["local"]
    assert local["reward"]["n"] == 1 and local["fraction_of_optimum"]["mean"] <= 1 + 1e-9
