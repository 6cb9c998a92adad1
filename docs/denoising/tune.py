"""The G-DDPG tuning table of docs/denoising.md ("Tuning"): one learner setting, one seed, scored on
validation states of the TRAINING users only (seeds 3e9 + i), never on a held-out user.

    python docs/denoising/tune.py gddpg '{"batch_size": 128, "actor_batch_size": 64}' --seed 0

prints the fraction of the optimum at every evaluation. The problem is the one of the
"Results" section (its cache must be filled: `incentive denoise cache` with the same options).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from provisioning.agents.registry import get
from provisioning.backend.scenes import load_judge, load_scene_model
from provisioning.denoising.generation import GenerationCache, SceneBackendGenerator
from provisioning.denoising.learning import DenoiseProblem, DenoiseValidation, learner_overrides, train_learner_run
from provisioning.denoising.problem import ACTION_DECODINGS, DenoiseConfig, QoETable
from provisioning.denoising.users import load_users

TUNING_SEED_BASE = 3 * 10 ** 9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("agent", choices=("gddpg", "ddpg", "td3", "sac"))
    parser.add_argument("overrides", help="JSON object of learner settings, e.g. '{}'")
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seeds", type=int, default=32)
    parser.add_argument("--cache", default="runs/denoise-cache")
    parser.add_argument("--users", default="docs/denoising/users.toml")
    parser.add_argument("--action-decoding", choices=ACTION_DECODINGS, default="grid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, _ = load_users(args.users)
    config = DenoiseConfig(t0_grid=(0, 2, 4, 6), tk_grid=(1, 2, 4, 8), ber_levels=(0, 0.005, 0.05, 0.3),
                           noise_seeds=args.noise_seeds, device_budget=(1.0, 2.0, 4.0, 8.0), server_budget=8.0,
                           action_decoding=args.action_decoding)
    table = QoETable(config, GenerationCache(SceneBackendGenerator(load_scene_model("scenes-large")), args.cache),
                     load_judge())
    problem = DenoiseProblem(config, train, train, table)  # validation on the training users
    validation = DenoiseValidation(problem, 24, seed_base=TUNING_SEED_BASE)
    overrides = json.loads(args.overrides)
    learner = get(args.agent).make_config(**{**learner_overrides(args.agent, args.steps, 500), **overrides})
    begin = time.process_time()
    with tempfile.TemporaryDirectory() as run_dir:
        result = train_learner_run(problem, args.agent, args.seed, args.steps, run_dir, eval_every=1000,
                                   eval_states=24, warmup_steps=500, validation=validation, learner_config=learner)
    print(args.agent, json.dumps(overrides), "seed", args.seed, *(["decoding", args.action_decoding]
                                                                  if args.action_decoding != "grid" else []),
          "curve", [round(c["fraction_of_oracle"], 3) for c in result.curve], f"{time.process_time() - begin:.0f}s")


if __name__ == "__main__":
    main()
