"""The generation loop: seeded noise, DDIM denoising with optional classifier-free guidance.

What this module is for: one small loop shared by measurement, shared denoising and the
benchmark, written as the standard diffusers UNet-plus-scheduler loop (``scheduler.
set_timesteps``, ``unet(x, t, class_labels=y)``, ``scheduler.step``) with two additions:
it can run a *slice* of the schedule (steps ``start..stop`` of ``total``, so a server and a
device can each run their part, paper 2's shared denoising), and it times itself with CUDA
synchronised. Noise is drawn on the CPU from a seeded ``torch.Generator`` and moved to the
device, so the same seed gives the same start on any device.

May import: numpy, torch, diffusers, ``market.seeding``.
"""
from __future__ import annotations

import time

import numpy as np

from market.seeding import derive_seed

from .models import BackendModel


def request_seed(seed: int, index: int) -> int:
    """Independent 63-bit seed of request ``index`` under run seed ``seed`` (:func:`market.seeding.derive_seed`)."""
    return derive_seed(seed, index, bits=63)


def initial_noise(model: BackendModel, count: int, seed: int):
    """Standard normal start ``(count, C, H, W)`` drawn on the CPU with ``seed``, on the model's device."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    shape = (count, model.channels, model.image_size, model.image_size)
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(model.device)


def synchronise(device: str) -> None:
    """Wait for queued CUDA work (no-op on the CPU), so wall-clock timings are true."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def denoise(model: BackendModel, latents, labels, total_steps: int, start: int = 0, stop: int | None = None,
            guidance_scale: float | None = None):
    """Run DDIM steps ``start..stop`` of a ``total_steps`` schedule on ``latents``.

    Parameters
    ----------
    model : BackendModel
        A shipped class-conditional model.
    latents : torch.Tensor
        ``(n, C, H, W)`` on the model's device: pure noise when ``start == 0``.
    labels : array-like of int
        Requested digit per image (``model.null_class`` for no prompt).
    total_steps : int
        Length of the DDIM schedule (the sum of server and device steps in shared denoising).
    start, stop : int
        Slice of the schedule to run (default: all of it).
    guidance_scale : float, optional
        Classifier-free guidance (default: the model's); 1.0 means one UNet call per step.

    Returns
    -------
    torch.Tensor
        The latents after the slice (images in [-1, 1] after the full schedule).
    """
    import torch

    if model.unet is None:
        raise TypeError("denoise needs a shipped class-conditional model (use generate() for pipelines)")
    scale = model.guidance_scale if guidance_scale is None else float(guidance_scale)
    scheduler = model.scheduler
    scheduler.set_timesteps(int(total_steps))
    timesteps = scheduler.timesteps[start:stop]
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=model.device)
    x = latents
    with torch.inference_mode():
        if scale != 1.0:
            y_both = torch.cat([y, torch.full_like(y, model.null_class)])
        for t in timesteps:
            if scale == 1.0:
                eps = model.unet(x, t, class_labels=y).sample
            else:
                eps_c, eps_u = model.unet(torch.cat([x, x]), t, class_labels=y_both).sample.chunk(2)
                eps = eps_u + scale * (eps_c - eps_u)
            x = scheduler.step(eps, t, x).prev_sample
    return x


def generate(model: BackendModel, labels, steps: int, seed: int, guidance_scale: float | None = None
             ) -> tuple[np.ndarray, float]:
    """Generate one image per label from seeded noise; return images and wall-clock seconds.

    Returns
    -------
    (np.ndarray, float)
        Images ``(n, C, H, W)`` float32 in [-1, 1] (decoded, on the CPU), and the seconds
        taken by denoising and decoding (CUDA synchronised; noise drawing excluded).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if model.pipeline is not None:
        return _generate_pipeline(model, len(labels), steps, seed)
    x = initial_noise(model, len(labels), seed)
    synchronise(model.device)
    start = time.perf_counter()
    x = denoise(model, x, labels, steps, guidance_scale=guidance_scale)
    images = x.clamp(-1, 1).float().cpu().numpy()
    synchronise(model.device)
    return images, time.perf_counter() - start


def _generate_pipeline(model: BackendModel, count: int, steps: int, seed: int) -> tuple[np.ndarray, float]:
    """Unconditional or text-free call of a foreign diffusers pipeline (output in [-1, 1], NCHW)."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    synchronise(model.device)
    start = time.perf_counter()
    out = model.pipeline(batch_size=count, generator=gen, num_inference_steps=int(steps), output_type="np")
    synchronise(model.device)
    seconds = time.perf_counter() - start
    images = np.asarray(out.images, dtype=np.float32)  # (n, H, W, C) in [0, 1]
    return np.transpose(images, (0, 3, 1, 2)) * 2.0 - 1.0, seconds
