"""Golden-section search: the project's one implementation, vectorised over independent problems.

What this module is for: maximising many one-dimensional unimodal (e.g. concave) functions at
once on their own intervals -- the certificate's regret polish, the uniform-reward baseline,
the provisioning oracle's dual, the torch batched solver's best responses (the same code runs on
numpy arrays and torch tensors: it only needs ``where``, ``maximum`` and arithmetic). Written here because scipy's bounded scalar minimiser handles
one problem per call (a Python loop over thousands of MUs) and the project needs the final
bracket, which it does not return. It lives in ``market`` (the bottom layer) so that
``solvers`` and ``provisioning`` can both use it.

May import: numpy (torch lazily, only when it is handed torch tensors).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["golden_max", "GOLDEN_RATIO"]

#: ``(sqrt(5) - 1) / 2``: the fraction of the bracket kept at each step.
GOLDEN_RATIO = (math.sqrt(5.0) - 1.0) / 2.0  # a Python float: it scales numpy arrays and torch tensors alike


def _array_ops(x):
    """(where, maximum, copy) for ``x``'s kind: numpy arrays or torch tensors (duck-typed, so
    that ``market`` does not import torch for numpy callers)."""
    if hasattr(x, "clone") and hasattr(x, "device"):
        import torch

        return torch.where, torch.maximum, lambda v: v.clone()
    return np.where, np.maximum, lambda v: np.array(v, dtype=float, copy=True)


def golden_max(fun, lo, hi, iterations: int, *, return_bracket: bool = False):
    """Vectorised golden-section maximisation of ``fun`` ((M,) -> (M,)) on [lo, hi] per entry.

    ``lo`` and ``hi`` are numpy arrays or torch tensors (then ``fun`` takes and returns
    tensors and so does this). Returns (best point, best value), and with ``return_bracket``
    also the final bracket (a, b), which holds a maximiser of every unimodal (e.g. concave)
    ``fun``. Minimise by maximising ``-fun``.
    """
    where, maximum, copy = _array_ops(lo)
    a, b = copy(lo), copy(hi)
    c = b - GOLDEN_RATIO * (b - a)
    d = a + GOLDEN_RATIO * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(iterations):
        left = fc >= fd  # maximum in [a, d]
        a = where(left, a, c)
        b = where(left, d, b)
        new_c = b - GOLDEN_RATIO * (b - a)
        new_d = a + GOLDEN_RATIO * (b - a)
        probe = where(left, new_c, new_d)
        fp = fun(probe)
        c_next = where(left, new_c, d)
        d_next = where(left, c, new_d)
        fc, fd = where(left, fp, fd), where(left, fc, fp)
        c, d = c_next, d_next
    best = where(fc >= fd, c, d)
    if return_bracket:
        return best, maximum(fc, fd), a, b
    return best, maximum(fc, fd)
