"""The oracle: at least as good as every policy, and equal to brute force on a fine grid."""
import numpy as np
import pytest
import tomllib
from scipy import optimize

from provisioning.channel import expected_ber
from provisioning.env import ProvisioningEnv
from provisioning.oracle import OracleResult, oracle_allocation
from provisioning.policies import RandomPolicy, StaticPolicy
from provisioning.qoe import QOE_TOLERANCE, latency_factor
from provisioning.quality import expected_max_std_normal
from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario, provisioning_config_from_dict
from provisioning.state import sample_states

CONFIG = load_provisioning_scenario(default_provisioning_scenario_path())


def tiny_config():
    data = tomllib.loads(default_provisioning_scenario_path().read_text())
    data["num_users"] = 2
    data["max_trials"] = 3
    data["objective"]["user_weights"] = [1.0, 1.5]
    data["state"]["quality_threshold"] = [[7.4, 7.8], [8.3, 8.7]]
    return provisioning_config_from_dict(data)


def brute_force(config, state, grid_points):
    """Best allocation with powers on a uniform grid, by max-plus dynamic programming.

    Independent of the oracle: user values come straight from the model's formulas with the
    exact expected BER, every N is tried, and the budget is shared by exhaustive DP.
    """
    obj = config.objective
    step = state.p_total_w / grid_points
    grid = np.arange(grid_points + 1) * step
    n = np.arange(1, config.max_trials + 1)
    seconds = np.asarray(config.latency.seconds_per_trial())
    mean, spread, kappa = config.quality.log_quality_params(state.difficulty)
    beta = state.mean_snr_per_watt(config)
    best_per_user = []
    for i in range(config.num_users):
        eber = expected_ber(beta[i] * grid, config.channel)  # (K+1,)
        lf = latency_factor(n, seconds[i], config.latency.max_latency_s)[:, None]
        quality = mean[i] + spread[i] * expected_max_std_normal(n)[:, None] - kappa[i] * eber[None, :] - np.log(state.quality_threshold[i])
        user_qoe = lf * quality
        value = (
            obj.qoe_weight * obj.user_weights[i] * user_qoe
            - obj.cost_weight * n[:, None] * (obj.compute_cost_per_step * obj.diffusion_steps + grid[None, :])
            - obj.penalty_per_user * (user_qoe < obj.min_qoe[i] - QOE_TOLERANCE)
        )
        best_per_user.append(value.max(axis=0))
    total = best_per_user[0]
    for user_best in best_per_user[1:]:
        total = np.array([np.max(total[: c + 1][::-1] + user_best[: c + 1]) for c in range(grid_points + 1)])
    return float(total.max())


def test_matches_brute_force_on_a_tiny_problem():
    config = tiny_config()
    for state in sample_states(config, 6, seed=21):
        result = oracle_allocation(config, state)
        grid_best = brute_force(config, state, 3000)
        assert result.utility >= grid_best - 1e-9  # grid allocations are feasible: cannot beat the optimum
        assert result.utility - grid_best <= 1e-6 * max(1.0, abs(result.utility))  # grid error only (measured ~1e-8)


def test_matches_brute_force_on_the_default_scenario():
    for state in sample_states(CONFIG, 3, seed=22):
        result = oracle_allocation(CONFIG, state)
        grid_best = brute_force(CONFIG, state, 600)
        assert result.utility >= grid_best - 1e-9
        assert result.utility - grid_best <= 1e-4 * max(1.0, abs(result.utility))  # measured ~1e-6 at 600 points


def test_at_least_as_good_as_every_policy_and_random_allocations():
    env = ProvisioningEnv(CONFIG)
    static = StaticPolicy(CONFIG)
    random_policy = RandomPolicy(CONFIG, seed=4)
    rng = np.random.default_rng(8)
    for state in sample_states(CONFIG, 25, seed=23):
        result = oracle_allocation(CONFIG, state)
        assert isinstance(result, OracleResult) and result.exact and result.method == "enumeration"
        assert result.power.sum() <= state.p_total_w * (1 + 1e-12)
        assert np.all((result.trials >= 1) & (result.trials <= CONFIG.max_trials))
        assert result.utility == pytest.approx(env.expected_utility(state, result.trials, result.power), rel=1e-12)
        assert result.utility >= env.expected_utility(state, *static.allocate(state)) - 1e-9
        for _ in range(40):
            assert result.utility >= env.expected_utility(state, *random_policy.allocate(state)) - 1e-9
            trials = rng.integers(1, CONFIG.max_trials + 1, size=3)
            power = rng.dirichlet(np.ones(4))[:3] * state.p_total_w
            assert result.utility >= env.expected_utility(state, trials, power) - 1e-9


def test_power_split_is_locally_optimal_for_its_trials():
    """A general-purpose solver started at the oracle's split and at equal shares finds nothing better."""
    env = ProvisioningEnv(CONFIG)
    for state in sample_states(CONFIG, 4, seed=24):
        result = oracle_allocation(CONFIG, state)
        objective = lambda p: -env.expected_utility(state, result.trials, np.clip(p, 0, None))
        constraint = {"type": "ineq", "fun": lambda p: state.p_total_w - np.sum(p)}
        for start in (result.power, np.full(3, state.p_total_w / 3)):
            found = optimize.minimize(objective, start, method="SLSQP", bounds=[(0, state.p_total_w)] * 3, constraints=[constraint])
            p = np.clip(found.x, 0, None)
            if p.sum() <= state.p_total_w * (1 + 1e-9):
                assert -objective(p) <= result.utility + 1e-7


def test_dual_method_bounds_the_enumeration():
    for state in sample_states(CONFIG, 10, seed=25):
        exact = oracle_allocation(CONFIG, state, method="enumeration")
        dual = oracle_allocation(CONFIG, state, method="dual")
        assert dual.utility <= exact.utility + 1e-9
        assert dual.upper_bound >= exact.utility - 1e-9
        if dual.exact:
            assert dual.utility == pytest.approx(exact.utility, abs=1e-7)


def test_optimum_varies_across_states_and_beats_static_clearly():
    env = ProvisioningEnv(CONFIG)
    states = sample_states(CONFIG, 60, seed=26)
    results = [oracle_allocation(CONFIG, s) for s in states]
    oracle = np.mean([r.utility for r in results])
    static = np.mean([env.expected_utility(s, *StaticPolicy(CONFIG).allocate(s)) for s in states])
    assert len({tuple(r.trials) for r in results}) > 10  # the optimum depends on the state
    shares = np.array([r.power / s.p_total_w for r, s in zip(results, states)])
    assert shares.std(axis=0).min() > 0.05
    assert 0.4 < static / oracle < 0.9


def variant(**changes):
    data = tomllib.loads(default_provisioning_scenario_path().read_text())
    data["num_users"] = 2
    data["max_trials"] = 4
    data["objective"]["user_weights"] = [1.0, 1.0]
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        data[section][key] = value
    return provisioning_config_from_dict(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"objective__user_weights": [0.0, 1.0]},  # a user whose QoE is worth nothing
        {"quality__ber_sensitivity_easy": 0.0, "quality__ber_sensitivity_hard": 0.0},  # power is useless
        {"objective__min_qoe": [5.0, 0.0]},  # an unreachable QoE floor: its penalty is always paid
        {"objective__cost_weight": 0.0},  # free resources: spend the whole budget
        {"channel__nakagami_m": 0.5, "channel__shadowing_sigma_db": 10.0},  # harsh channel
    ],
)
def test_edge_cases_match_brute_force(changes):
    config = variant(**changes)
    for state in sample_states(config, 3, seed=31):
        result = oracle_allocation(config, state)
        grid_best = brute_force(config, state, 2000)
        assert result.utility >= grid_best - 1e-9
        assert result.utility - grid_best <= 1e-4 * max(1.0, abs(result.utility))


def test_measured_quality_model_is_used_by_the_oracle():
    from provisioning.quality import InterpolatedQualityModel

    measured = InterpolatedQualityModel((0.0, 1.0), (np.log(8.6), np.log(7.6)), (0.04, 0.10), (2.0, 12.0))
    env = ProvisioningEnv(CONFIG, quality_model=measured)
    for state in sample_states(CONFIG, 3, seed=32):
        result = oracle_allocation(CONFIG, state, quality_model=measured)
        assert result.utility == pytest.approx(env.expected_utility(state, result.trials, result.power), rel=1e-12)
        assert result.utility >= env.expected_utility(state, *StaticPolicy(CONFIG).allocate(state)) - 1e-9


@pytest.mark.parametrize("config", [CONFIG, tiny_config(), variant(**{"objective__min_qoe": [5.0, 0.0]})], ids=["default", "tiny", "floor"])
def test_batched_oracle_equals_per_state_oracle(config):
    from provisioning.oracle import oracle_allocations

    states = sample_states(config, 120, seed=33)
    batched = oracle_allocations(config, states, batch_size=50)
    for state, result in zip(states, batched):
        single = oracle_allocation(config, state)
        assert result.exact and result.method == "enumeration"
        assert result.utility == pytest.approx(single.utility, rel=1e-9, abs=1e-9)
        assert result.utility == pytest.approx(ProvisioningEnv(config).expected_utility(state, result.trials, result.power), rel=1e-12)
