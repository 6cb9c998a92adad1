"""Decomposition by ASP: shards solve and certify independently; together they are the market's
equilibrium; workers read only their shard and report errors with the file's row numbers."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from market.columnar import MU_FILE, load_columnar, write_columnar
from market.errors import ScenarioError
from market.generator import generate_columnar
from solvers.certificate import certify
from solvers.decomposition import plan_shards, solve_sharded


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("dec") / "s.parquet"
    write_columnar(generate_columnar(6, 600, seed=9), path)
    return path


def test_plan_shards_covers_every_asp_once_and_balances():
    counts = np.array([50, 10, 0, 40, 30, 30, 20])
    groups = plan_shards(counts, 3)
    flat = np.sort(np.concatenate(groups))
    assert np.array_equal(flat, [0, 1, 3, 4, 5, 6])  # the empty ASP needs no shard
    loads = [counts[g].sum() for g in groups]
    assert max(loads) - min(loads) <= 10


@pytest.mark.parametrize("executor,workers", [("serial", 1), ("process", 2)])
def test_shards_together_are_a_certified_equilibrium(scenario, tmp_path, executor, workers):
    result = solve_sharded(scenario, shards=3, executor=executor, workers=workers, out=tmp_path)
    assert result.passed and len(result.shards) == 3
    assert sum(s.n_mus for s in result.shards) == 600
    mus = pq.read_table(tmp_path / "mus")
    whole = load_columnar(scenario)
    market = whole.to_market()
    assert sorted(mus.column("name").to_pylist()) == sorted(market.mu_names)
    # the whole market's certificate judges the gathered rewards independently
    position = {name: i for i, name in enumerate(market.mu_names)}
    rewards = np.empty(market.n_mus)
    rewards[[position[n] for n in mus.column("name").to_pylist()]] = mus.column("reward").to_numpy()
    cert = certify(market, rewards)
    assert cert.passed
    assert cert.max_relative_regret == pytest.approx(result.summary()["certificate"]["max_relative_regret"],
                                                     rel=1e-6, abs=1e-15)


def test_shard_errors_name_the_file_row(tmp_path):
    path = tmp_path / "bad.parquet"
    cs = generate_columnar(4, 80, seed=1)
    cs.mu_float["reward_max"][57] = 1e9  # above value_per_qoe
    write_columnar(cs, path)
    with pytest.raises(ScenarioError) as info:
        solve_sharded(path, shards=4)
    assert info.value.field == "mu[57].reward_max" and info.value.file == str(path / MU_FILE)
    with pytest.raises(ScenarioError) as whole:
        load_columnar(path)
    assert whole.value.field == info.value.field and whole.value.message == info.value.message


@pytest.mark.slow
def test_ray_executor(scenario, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    result = solve_sharded(scenario, shards=2, executor="ray", workers=2, out=tmp_path)
    assert result.passed and len({s.pid for s in result.shards}) == 2
