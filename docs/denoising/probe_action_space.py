"""The probe of docs/denoising.md ("Which part of the allocation carries over to held-out users"):
how much of the exact optimum's advantage over the `local` rule a policy of the observation can
learn from the training users, and in which part of the action.

    python docs/denoising/probe_action_space.py [--users docs/denoising/users.toml] [--train-states 1500]

1. The exact optimum on ``--train-states`` states of the TRAINING users (seeds 6e9 + i); 80% of them
   to fit, 20% to check the fit (never a held-out user).
2. Ceilings of two reduced action spaces, on those checking states and on the held-out states:
   the best ``t0`` per state with every device at its budget and the highest powers (24) leaves
   (``server-steps`` decoding), and the `local` rule (no server steps).
3. Supervised imitation of the optimum (scikit-learn classifiers, one per action entry), scored
   two ways: the whole imitated allocation (decoded within the budgets), and only its ``t0``
   with the rest by ``server-steps``'s rule (a gate on sharing).

The classifiers see the optimum's decisions, which no learner does: a generous reference for
what the observation and these training users carry, not a learner (and not a strict bound).
The problem is that of the "Results" section, 64 images per allocation (its cache must be filled).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from provisioning.backend.scenes import load_judge, load_scene_model
from provisioning.denoising.generation import GenerationCache, SceneBackendGenerator
from provisioning.denoising.learning import HELD_OUT_SEED_BASE, DenoiseProblem, LocalOnlyPolicy
from provisioning.denoising.problem import (Allocation, DenoiseConfig, QoETable, best_reachable, observation, optimum,
                                            outcome, server_steps_allocation, within_budgets)
from provisioning.denoising.users import load_users

PROBE_SEED_BASE = 6 * 10 ** 9
CLASSIFIERS = {"logistic regression": lambda: LogisticRegression(max_iter=2000),
               "random forest": lambda: RandomForestClassifier(200, min_samples_leaf=3, random_state=0),
               "MLP (64, 64)": lambda: MLPClassifier((64, 64), max_iter=1000, random_state=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="docs/denoising/users.toml")
    parser.add_argument("--cache", default="runs/denoise-cache")
    parser.add_argument("--train-states", type=int, default=1500)
    parser.add_argument("--held-out-states", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    begin = time.process_time()
    train, held_users = load_users(args.users)
    config = DenoiseConfig(t0_grid=(0, 2, 4, 6), tk_grid=(1, 2, 4, 8), ber_levels=(0, 0.005, 0.05, 0.3),
                           noise_seeds=64, device_budget=(1.0, 2.0, 4.0, 8.0), server_budget=8.0,
                           action_decoding="server-steps")
    table = QoETable(config, GenerationCache(SceneBackendGenerator(load_scene_model("scenes-large")), args.cache),
                     load_judge())
    problem = DenoiseProblem(config, train, held_users, table)
    K = config.devices

    states = problem.states(args.train_states, PROBE_SEED_BASE, users=train)
    best = [optimum(config, table, s) for s in states]
    X = np.stack([observation(config, s) for s in states])
    fit = int(0.8 * len(states))
    check, check_best = states[fit:], np.array([o.reward for _, o in best[fit:]])
    held = problem.states(args.held_out_states, HELD_OUT_SEED_BASE)
    held_optimum = [optimum(config, table, s) for s in held]
    held_best = np.array([o.reward for _, o in held_optimum])
    X_held = np.stack([observation(config, s) for s in held])
    print(f"{len(states)} training-user states ({fit} to fit, {len(check)} to check), "
          f"{len(held)} held-out states; the optimum uses server steps in "
          f"{np.mean([a.t0_index > 0 for a, _ in best]):.2f} / {np.mean([a.t0_index > 0 for a, _ in held_optimum]):.2f} of them")

    def fraction(where, allocations) -> float:
        opt = check_best if where is check else held_best
        return float(np.mean([outcome(config, table, s, a).reward for s, a in zip(where, allocations)]) / np.mean(opt))

    def row(name, on_check, on_held) -> None:
        print(f"| {name} | {on_check:.3f} | {on_held:.3f} |")

    print("\n| policy (fraction of the optimum) | training users, checking states | held-out users |\n|---|---|---|")
    rule = LocalOnlyPolicy(config)
    row("`local` rule", fraction(check, [rule.allocation(s) for s in check]),
        fraction(held, [rule.allocation(s) for s in held]))
    row("best `t0` per state, rest by rule (`server-steps` ceiling)",
        fraction(check, [best_reachable(config, table, s)[0] for s in check]),
        fraction(held, [best_reachable(config, table, s)[0] for s in held]))
    targets = {"t0": [a.t0_index for a, _ in best]}
    for k in range(K):
        targets[f"tk{k}"] = [a.tk_index[k] for a, _ in best]
        targets[f"power{k}"] = [a.power_index[k] for a, _ in best]
    for name, make in CLASSIFIERS.items():
        predict = {}
        for entry, y in targets.items():
            y = np.asarray(y)
            if len(set(y[:fit])) == 1:
                predict[entry] = lambda Z, v=int(y[0]): np.full(len(Z), v)
            else:
                predict[entry] = make().fit(X[:fit], y[:fit]).predict

        def whole(Z, where):
            e = {entry: f(Z) for entry, f in predict.items()}
            return [within_budgets(config, s, Allocation(int(e["t0"][i]), tuple(int(e[f"tk{k}"][i]) for k in range(K)),
                                                         tuple(int(e[f"power{k}"][i]) for k in range(K))))
                    for i, s in enumerate(where)]

        def gate(Z, where):
            return [server_steps_allocation(config, s, int(t)) for t, s in zip(predict["t0"](Z), where)]

        row(f"imitation, {name}: whole allocation", fraction(check, whole(X[fit:], check)),
            fraction(held, whole(X_held, held)))
        row(f"imitation, {name}: `t0` only, rest by rule", fraction(check, gate(X[fit:], check)),
            fraction(held, gate(X_held, held)))
    print(f"\n{time.process_time() - begin:.0f} CPU s")


if __name__ == "__main__":
    main()
