"""Argument types of the command line: every number and name checked before any work.

What this module is for: ``argparse`` ``type=`` converters that reject what would later fail
deep inside a run (a negative seed, ``--best-of-k 0``, ``--samples 1e12``, ``--ber nan``,
``--device cuda`` on a CPU build). argparse turns their :class:`argparse.ArgumentTypeError`
into a one-line message naming the flag and exit code 2 (see :class:`incentive.cli.OneLineParser`).

May import: the standard library (torch only inside :func:`device`, when CUDA is asked for).
"""
from __future__ import annotations

import argparse
import math

#: Seeds are 64-bit: numpy's and torch's generators take any value in [0, 2^63).
SEED_MAX = 2**63 - 1


def _int(text: str) -> int:
    try:
        return int(text, 10)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number in [0, 2^63)."""
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be in [0, 2^63 - 1], got {text}")
    return value


def count(low: int = 1, high: int = 10**9, *, what: str = ""):
    """A whole number in ``[low, high]`` (``high`` keeps a run within memory and a lifetime)."""

    def convert(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number in [{low}, {high:,}]{what}, got {text}")
        return value

    convert.__name__ = "int"
    return convert


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False):
    """A finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def convert(text: str) -> float:
        value = _float(text)
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low:g}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, got {text}")
        return value

    convert.__name__ = "float"
    return convert


#: Common kinds.
positive = count(1)
non_negative = count(0)
probability = number(0.0, 1.0)
finite = number()


def device(text: str) -> str:
    """``cpu`` or ``cuda``; ``cuda`` only where torch sees a CUDA device."""
    if text not in ("cpu", "cuda") and not text.startswith("cuda:"):
        raise argparse.ArgumentTypeError(f"must be 'cpu' or 'cuda', got {text!r}")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"CUDA was asked for, but this torch build ({torch.__version__}) sees no CUDA device; use --device cpu")
        if ":" in text:
            index = _int(text.split(":", 1)[1])
            if not 0 <= index < torch.cuda.device_count():
                raise argparse.ArgumentTypeError(f"no CUDA device {index} (this machine has {torch.cuda.device_count()})")
    return text


def no_action(command: str, actions: tuple[str, ...]) -> int:
    """A command group called without its action: one line on stderr, exit code 2."""
    import sys

    print(f"error: incentive {command}: give an action: {', '.join(actions)} (see `incentive {command} --help`)",
          file=sys.stderr)
    return 2
