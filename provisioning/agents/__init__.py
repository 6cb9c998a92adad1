"""Learners for the provisioning environment, listed in :mod:`provisioning.agents.registry`.

- :mod:`provisioning.agents.d3pg`: the diffusion actor with twin critics and a DDPG learner
  (hand-written in torch: no library provides it) and its trainer;
- :mod:`provisioning.agents.sb3`: the Stable-Baselines3 baselines (PPO, SAC, DDPG, TD3) and
  their trainer.

Each module supplies a configuration, a trainer (its own update; the run folder, checkpoints
and curves are :mod:`provisioning.training`'s) and a policy loader.

May import: ``market`` (errors, atomic IO), numpy, torch, gymnasium, stable-baselines3 and,
lazily, ``provisioning.evaluation`` (the seeding convention and step metrics). Never
``incentive`` or ``solvers``.
"""
