"""The training and evaluation data of the backend: scikit-learn's bundled digits.

What this module is for: load the 1,797 8x8 handwritten digits that ship inside
scikit-learn (no download), split them once with a fixed seed into a training part (for
the generators, the evaluator and the scorer) and a held-out part (only for reporting the
evaluator's own accuracy), and turn them into the 1x16x16 images in [-1, 1] that the
diffusion models generate (bilinear upsampling of the 8x8 grid).

May import: numpy, torch, scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Side of the generated images in pixels (8x8 digits upsampled by 2).
IMAGE_SIZE: int = 16
#: Number of classes (digits 0..9); class index 10 is the "no prompt" class of guidance.
NUM_CLASSES: int = 10
#: Seed of the one train / held-out split every part of the backend uses.
SPLIT_SEED: int = 0
#: Share of the digits in the held-out part.
HELD_OUT_SHARE: float = 0.3


@dataclass(frozen=True)
class DigitSplit:
    """Real digits as generator-sized images.

    Attributes
    ----------
    train_images, test_images : np.ndarray
        float32 arrays ``(n, 1, 16, 16)`` in [-1, 1] (ink is +1).
    train_labels, test_labels : np.ndarray
        int64 arrays ``(n,)`` with the digit 0..9.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def upsample_digits(raw: np.ndarray) -> np.ndarray:
    """Map sklearn digit rows (``(n, 64)`` values 0..16) to ``(n, 1, 16, 16)`` in [-1, 1].

    Bilinear upsampling (``torch.nn.functional.interpolate``, ``align_corners=False``).
    """
    import torch
    import torch.nn.functional as F

    images = torch.as_tensor(np.asarray(raw, dtype=np.float32).reshape(-1, 1, 8, 8) / 16.0)
    images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (images * 2.0 - 1.0).clamp(-1.0, 1.0).numpy()


def load_split() -> DigitSplit:
    """Load the bundled digits and return the fixed split (seed :data:`SPLIT_SEED`)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=HELD_OUT_SHARE, random_state=SPLIT_SEED, stratify=digits.target
    )
    return DigitSplit(
        train_images=upsample_digits(x_train),
        train_labels=np.asarray(y_train, dtype=np.int64),
        test_images=upsample_digits(x_test),
        test_labels=np.asarray(y_test, dtype=np.int64),
    )
