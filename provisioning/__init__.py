"""Provisioning: per ASP, inference trials and transmission power per user over a fading
channel, learned by D3PG and compared with baselines and the exact optimum; the measured
diffusion backend lives in :mod:`provisioning.backend`.

May import: ``market`` (its outputs and shared error/IO helpers), numpy, scipy, cvxpy,
torch, gymnasium, stable-baselines3, diffusers (heavy ones lazily). Never ``incentive``
or ``solvers``.
"""
