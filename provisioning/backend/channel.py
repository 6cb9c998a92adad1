"""The noisy link: 8-bit quantisation and independent bit flips at a bit error rate (BER).

What this module is for: what crosses the air is bits. An image in [-1, 1] is quantised to
8-bit pixels (``round((x + 1) / 2 * 255)``); an intermediate latent of shared denoising is
quantised uniformly to 8 bits on ``[-latent_clip, latent_clip]`` (clipped first). Each bit
is flipped independently with probability ``ber`` (a binary symmetric channel), and the
receiver dequantises. Flips are drawn as ``u < ber`` from one uniform draw per bit, so two
BERs applied with the same generator flip nested sets of bits (common random numbers:
curves over BER are not noisier than the effect). Hand-written because no library in our
stack models a binary symmetric channel on tensors; it is ten lines of numpy.

May import: numpy, torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Range of latent values sent over the link (values outside are clipped before quantisation).
LATENT_CLIP: float = 4.0


@dataclass(frozen=True)
class ChannelOutput:
    """What the receiver gets.

    Attributes
    ----------
    values : np.ndarray
        The dequantised received values, same shape as sent (float32).
    bits : int
        Bits sent.
    bits_flipped : int
        Bits the channel flipped.
    """

    values: np.ndarray
    bits: int
    bits_flipped: int


def quantise_unit(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Uniform 8-bit quantisation of ``x`` clipped to ``[low, high]`` -> uint8."""
    scaled = (np.clip(np.asarray(x, dtype=np.float64), low, high) - low) / (high - low) * 255.0
    return np.rint(scaled).astype(np.uint8)


def dequantise_unit(q: np.ndarray, low: float, high: float) -> np.ndarray:
    """Inverse of :func:`quantise_unit` (float32)."""
    return (np.asarray(q, dtype=np.float64) / 255.0 * (high - low) + low).astype(np.float32)


def flip_bits(data: np.ndarray, ber: float, uniforms: np.ndarray | None = None,
              rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Flip each bit of the uint8 array ``data`` with probability ``ber``.

    Parameters
    ----------
    data : np.ndarray of uint8
    ber : float
        Bit error rate in [0, 1].
    uniforms : np.ndarray, optional
        One uniform in [0, 1) per bit (``data.size * 8``); a bit flips where ``u < ber``.
    rng : np.random.Generator, optional
        Used to draw ``uniforms`` when they are not given.

    Returns
    -------
    (np.ndarray of uint8, int)
        The received bytes (same shape) and the number of flipped bits.
    """
    if not 0.0 <= float(ber) <= 1.0 or not np.isfinite(ber):
        raise ValueError(f"ber must be in [0, 1], got {ber!r}")
    data = np.ascontiguousarray(data, dtype=np.uint8)
    bits = np.unpackbits(data.reshape(-1))
    if ber == 0.0:
        return data.copy(), 0
    if uniforms is None:
        rng = rng if rng is not None else np.random.default_rng()
        uniforms = rng.random(bits.size)
    mask = np.asarray(uniforms).reshape(-1)[: bits.size] < ber
    received = np.packbits(bits ^ mask.astype(np.uint8)).reshape(data.shape)
    return received, int(mask.sum())


def transmit_images(images: np.ndarray, ber: float, uniforms: np.ndarray | None = None,
                    rng: np.random.Generator | None = None) -> ChannelOutput:
    """Send images in [-1, 1] as 8-bit pixels through the channel; returns received images in [-1, 1]."""
    q = quantise_unit(images, -1.0, 1.0)
    received, flipped = flip_bits(q, ber, uniforms=uniforms, rng=rng)
    return ChannelOutput(dequantise_unit(received, -1.0, 1.0), int(q.size * 8), flipped)


def transmit_latent(latent: np.ndarray, ber: float, uniforms: np.ndarray | None = None,
                    rng: np.random.Generator | None = None, clip: float = LATENT_CLIP) -> ChannelOutput:
    """Send an intermediate latent as 8-bit values on ``[-clip, clip]`` through the channel."""
    q = quantise_unit(latent, -clip, clip)
    received, flipped = flip_bits(q, ber, uniforms=uniforms, rng=rng)
    return ChannelOutput(dequantise_unit(received, -clip, clip), int(q.size * 8), flipped)
