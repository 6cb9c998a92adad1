"""Speed of one D3PG decision (batch 1, CPU) against the oracle's time per state, as a ratio.

Goal: one decision of the trained actor (observation -> action: normalisation, 6 denoising
steps) takes at most 1 ms on the CPU with one thread. Reference measured in the same run: the
exact optimum (:func:`provisioning.oracle.oracle_allocation`) per state on the same held-out
states. Prints the median wall times and ``oracle time / actor time``, and the same for this
thread's CPU time (the honest figure when other jobs share the cores).

The shipped policy of the default scenario is timed when it exists; otherwise an untrained
actor of the same architecture (the time does not depend on the weights) and the script says
so.

    .venv/bin/python bench/bench_provision.py [--decisions 2000] [--states 50]

May import: everything.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=2000, help="timed actor decisions")
    parser.add_argument("--states", type=int, default=50, help="timed oracle states")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from provisioning.agents.d3pg import D3PGLearner, D3PGPolicy
    from provisioning.evaluation import TEST_STATES_SEED, held_out_states
    from provisioning.oracle import oracle_allocation
    from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario
    from provisioning.trained import shipped_policy_path
    from provisioning.training import ProvisioningProblem, problem_from_scenario, tuned_d3pg_config

    scenario = default_provisioning_scenario_path()
    config = load_provisioning_scenario(scenario)
    problem: ProvisioningProblem = problem_from_scenario(scenario)
    env = problem.make_env(0)
    states = held_out_states(env, args.states, TEST_STATES_SEED)
    observations = [env.reset(options={"state": s})[0] for s in states]

    path = shipped_policy_path(problem.name)
    if path.is_file():
        policy = D3PGPolicy.load(path, seed=0)
        label = f"shipped policy {path.name}"
    else:
        obs_dim, act_dim = observations[0].shape[0], 2 * config.num_users
        policy = D3PGLearner(obs_dim, act_dim, tuned_d3pg_config(), seed=0).export_policy()
        label = "untrained actor of the shipped architecture (no shipped policy found)"

    for obs in observations[:20]:  # warm-up
        policy.act(obs)
    actor_times, actor_cpu = [], []
    for i in range(args.decisions):
        obs = observations[i % len(observations)]
        start, start_cpu = time.perf_counter(), time.thread_time()
        policy.act(obs)
        actor_times.append(time.perf_counter() - start)
        actor_cpu.append(time.thread_time() - start_cpu)
    oracle_times, oracle_cpu = [], []
    for state in states:
        start, start_cpu = time.perf_counter(), time.thread_time()
        oracle_allocation(config, state)
        oracle_times.append(time.perf_counter() - start)
        oracle_cpu.append(time.thread_time() - start_cpu)

    actor_ms = statistics.median(actor_times) * 1e3
    actor_p90 = float(np.percentile(actor_times, 90)) * 1e3
    oracle_ms = statistics.median(oracle_times) * 1e3
    print(f"scenario: {problem.name} ({config.num_users} users); actor: {label}")
    print(f"D3PG decision (batch 1, 1 thread): median {actor_ms:.3f} ms, p90 {actor_p90:.3f} ms  (goal <= 1 ms: {'met' if actor_ms <= 1.0 else 'NOT met'})")
    print(f"oracle per state: median {oracle_ms:.3f} ms")
    print(f"ratio oracle / actor: {oracle_ms / actor_ms:.2f}x")
    # CPU time of this thread: what the decision costs when the machine is shared
    actor_cpu_ms = statistics.median(actor_cpu) * 1e3
    oracle_cpu_ms = statistics.median(oracle_cpu) * 1e3
    print(f"CPU time (this thread): actor median {actor_cpu_ms:.3f} ms, oracle median {oracle_cpu_ms:.3f} ms, ratio {oracle_cpu_ms / actor_cpu_ms:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
