"""Learners for the provisioning environment.

- :mod:`provisioning.agents.d3pg`: the diffusion actor with twin critics and a DDPG learner
  (hand-written in torch: no library provides it).
- :mod:`provisioning.agents.sb3`: the Stable-Baselines3 baselines (PPO, SAC, DDPG, TD3).

May import: ``market`` (errors, atomic IO), numpy, torch, gymnasium, stable-baselines3.
Never ``incentive`` or ``solvers``.
"""
