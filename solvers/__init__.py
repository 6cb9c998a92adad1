"""Algorithms that find and certify equilibria of the market model.

May import: ``market``, numpy, scipy, cvxpy and pyomo (lazily). Never ``incentive`` or
``provisioning``.
"""
