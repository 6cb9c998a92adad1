"""The generation backend: small diffusers models trained in this repository that generate,
and measure true accuracy, tokens and latency, on CUDA when present and on the CPU otherwise.

May import: ``market`` (errors, atomic IO), numpy, torch, diffusers, safetensors,
scikit-learn. Never ``incentive``, ``solvers`` or the learners of ``provisioning``.
"""
