"""The market model: data, QoE, followers (ASPs) and leaders (MUs) of the AIGC incentive EPEC.

May import: numpy, scipy, cvxpy (lazily) and the standard library. Imports nothing else of
this project: ``solvers``, ``provisioning`` and ``incentive`` build on it.
"""
