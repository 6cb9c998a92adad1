"""Derived seeds: one independent integer seed per (run seed, purpose, index, ...).

What this module is for: the one helper every layer uses to split a user's seed into
independent streams (training episodes, market-provisioning slots, backend requests), by
hashing the keys with :class:`numpy.random.SeedSequence` (the NumPy way to spawn independent
streams). ``bits`` fixes the range: 31 for APIs that want a non-negative int32, 32 for
``numpy``/gymnasium seeds, 63 for a non-negative int64 (torch generators).

May import: numpy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(*keys: int, bits: int = 63) -> int:
    """An integer in ``[0, 2^bits)`` determined by the integer ``keys`` (independent across keys).

    ``bits`` is 31, 32 (one 32-bit word of the SeedSequence state, shifted right for 31) or 63
    (one 64-bit word shifted right by one).
    """
    if bits not in (31, 32, 63):
        raise ValueError(f"bits must be 31, 32 or 63, got {bits!r}")
    sequence = np.random.SeedSequence([int(k) for k in keys])
    if bits == 63:
        return int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)
    word = int(sequence.generate_state(1)[0])
    return word >> 1 if bits == 31 else word
