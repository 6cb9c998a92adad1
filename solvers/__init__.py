"""Algorithms that find and certify equilibria of the market model.

Entry point: :func:`solvers.solve` (see :mod:`solvers.registry`); the result object is
:class:`solvers.result.EquilibriumResult`; the certificate :func:`solvers.certificate.certify`.

May import: ``market``, numpy, scipy, cvxpy and pyomo (lazily). Never ``incentive`` or
``provisioning``.
"""
from solvers.registry import REGISTRY, SolverSpec, available_solvers, solve  # noqa: F401
from solvers.result import STATUSES, EquilibriumResult  # noqa: F401
