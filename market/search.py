"""Golden-section search: the project's one implementation, vectorised over independent problems.

What this module is for: maximising many one-dimensional unimodal (e.g. concave) functions at
once on their own intervals -- the certificate's regret polish, the uniform-reward baseline,
the provisioning oracle's dual. Written here because scipy's bounded scalar minimiser handles
one problem per call (a Python loop over thousands of MUs) and the project needs the final
bracket, which it does not return. It lives in ``market`` (the bottom layer) so that
``solvers`` and ``provisioning`` can both use it.

May import: numpy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["golden_max", "GOLDEN_RATIO"]

#: ``(sqrt(5) - 1) / 2``: the fraction of the bracket kept at each step.
GOLDEN_RATIO = (np.sqrt(5.0) - 1.0) / 2.0


def golden_max(fun, lo: np.ndarray, hi: np.ndarray, iterations: int, *, return_bracket: bool = False):
    """Vectorised golden-section maximisation of ``fun`` ((M,) -> (M,)) on [lo, hi] per entry.

    Returns (best point, best value), and with ``return_bracket`` also the final bracket
    (a, b), which holds a maximiser of every unimodal (e.g. concave) ``fun``. Minimise by
    maximising ``-fun``.
    """
    a, b = np.array(lo, dtype=float, copy=True), np.array(hi, dtype=float, copy=True)
    c = b - GOLDEN_RATIO * (b - a)
    d = a + GOLDEN_RATIO * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(iterations):
        left = fc >= fd  # maximum in [a, d]
        a = np.where(left, a, c)
        b = np.where(left, d, b)
        new_c = b - GOLDEN_RATIO * (b - a)
        new_d = a + GOLDEN_RATIO * (b - a)
        probe = np.where(left, new_c, new_d)
        fp = fun(probe)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        fc, fd = np.where(left, fp, fd), np.where(left, fc, fp)
        c, d = c_next, d_next
    best = np.where(fc >= fd, c, d)
    if return_bracket:
        return best, np.maximum(fc, fd), a, b
    return best, np.maximum(fc, fd)
