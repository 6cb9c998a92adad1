"""Shared-denoising generators for the allocation problem and the on-disk generation cache.

What this module is for: the image device ``k`` ends up with when the server runs ``t0`` DDIM
steps of a ``t0 + t_k`` schedule under the server prompt, the latent crosses a link with bit
error rate ``ber``, and the device runs the remaining ``t_k`` steps under its own prompt
(Du et al., "User-Centric Interactive AI for Distributed Diffusion Model-based AI-Generated
Content", section 3.1.3, Algorithm 1). Two generators share one protocol:

- :class:`SceneBackendGenerator`: the scene backend's UNet (``load_scene_model``,
  ``denoise_scenes``) and its bit-flip link (``transmit_latent``), as in
  ``provisioning.backend.scenes.experiments.shared_denoising``;
- :class:`RenderingGenerator`: a TEST DOUBLE that renders a deterministic outcome directly
  (fusion when the server's share of the steps is large, noise at high BER with few device
  steps, blur with few steps in all); it makes tests fast and exact and is never a result.

:class:`GenerationCache` makes training affordable: an image is a pure function of
(generator identity, server prompt, device prompt, t0, t_k, BER level, seed), so it is computed
once and kept in memory and (optionally) on disk as one ``.npy`` per key under
``<dir>/v<CACHE_VERSION>/<generator identity>/``, written atomically (``market.atomic``). The
key is hashed with SHA-256 of its canonical JSON. The scene generator's identity includes a digest of its weights and its guidance
scale, so a retrained model never reads the old model's images; a change of generation code
must bump :data:`CACHE_VERSION` (old entries are then ignored, never deleted).

May import: numpy, torch (lazily), ``market`` (atomic IO), the public API of
``provisioning.backend.scenes`` and ``provisioning.backend.channel``.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

CACHE_VERSION = 1

#: Attribute values a generator assumes for what a prompt leaves unstated.
DEFAULT_SCENE = dict(scene="grassland", object="ball", colour="red", count="one", size="large",
                     position="centre", lighting="day", degradation="none")


@dataclass(frozen=True)
class GenerationKey:
    """What determines one generated image (the cache key)."""

    server_prompt: str
    device_prompt: str
    t0: int
    tk: int
    ber: float
    seed: int

    def digest(self, identity: str) -> str:
        text = json.dumps({"v": CACHE_VERSION, "generator": identity, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


class Generator(Protocol):
    """Makes the device image of a key: ``(3, 32, 32)`` float32 in [-1, 1]."""

    identity: str

    def generate(self, key: GenerationKey) -> np.ndarray: ...


class RenderingGenerator:
    """Test double: renders the outcome directly (see the module docstring). Exact and fast."""

    identity = "render-double-v1"

    def __init__(self, fusion_share: float = 0.5, noisy_ber: float = 0.06, noisy_below_tk: int = 4,
                 blur_below_steps: int = 4):
        self.fusion_share = fusion_share
        self.noisy_ber = noisy_ber
        self.noisy_below_tk = noisy_below_tk
        self.blur_below_steps = blur_below_steps

    def generate(self, key: GenerationKey) -> np.ndarray:
        from provisioning.backend.scenes import SceneDescription, parse
        from provisioning.backend.scenes.render import render, to_model_space

        def complete(text: str) -> SceneDescription:
            return SceneDescription(**{**DEFAULT_SCENE, **parse(text).description.specified()})

        own, server = complete(key.device_prompt), complete(key.server_prompt)
        if key.t0 > 0 and key.t0 / (key.t0 + key.tk) >= self.fusion_share:
            own = replace(own, object=server.object, colour=server.colour)
        if key.t0 > 0 and key.ber >= self.noisy_ber and key.tk < self.noisy_below_tk:
            own = replace(own, degradation="noise")
        elif key.t0 + key.tk < self.blur_below_steps:
            own = replace(own, degradation="blur")
        return to_model_space(render(own, key.seed % 997)[None])[0].astype(np.float32)


def weights_digest(model) -> str:
    """First 12 hex digits of the SHA-256 of the UNet's parameters (a retrained model gets new cache entries)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


class SceneBackendGenerator:
    """The scene backend's UNet with the bit-flip link (CPU or CUDA)."""

    def __init__(self, model, guidance_scale: float | None = None):
        self.model = model
        self.guidance_scale = guidance_scale
        self.identity = f"scenes-{model.name}-{weights_digest(model)}-g{model.guidance_scale if guidance_scale is None else guidance_scale}"

    def generate(self, key: GenerationKey) -> np.ndarray:
        import torch

        from provisioning.backend.channel import transmit_latent
        from provisioning.backend.scenes.generator import denoise_scenes, from_latent, scene_noise

        model, total = self.model, key.t0 + key.tk
        x = scene_noise(1, key.seed, model.device)
        if key.t0 > 0:
            server = denoise_scenes(model, x, [key.server_prompt], total, 0, key.t0, self.guidance_scale)
            rng = np.random.default_rng(np.random.SeedSequence([key.seed, key.t0, key.tk, int(round(key.ber * 1e6))]))
            x = torch.as_tensor(transmit_latent(server.float().cpu().numpy(), key.ber, rng=rng).values).to(model.device)
        out = denoise_scenes(model, x, [key.device_prompt], total, key.t0, None, self.guidance_scale)
        return from_latent(out).clamp(-1, 1).float().cpu().numpy()[0]


class GenerationCache:
    """Memory + optional disk cache of a generator's images (see the module docstring).

    Counters: ``memory_hits``, ``disk_hits``, ``misses`` (generated).
    """

    def __init__(self, generator: Generator, directory: str | Path | None = None):
        self.generator = generator
        self.directory = None if directory is None else Path(directory) / f"v{CACHE_VERSION}" / generator.identity
        self._memory: dict[str, np.ndarray] = {}
        self.memory_hits = self.disk_hits = self.misses = 0

    def _path(self, digest: str) -> Path:
        return self.directory / digest[:2] / f"{digest}.npy"

    def image(self, key: GenerationKey) -> np.ndarray:
        """The image of ``key`` (generated at most once per cache directory)."""
        from market.atomic import atomic_write_bytes

        digest = key.digest(self.generator.identity)
        if digest in self._memory:
            self.memory_hits += 1
            return self._memory[digest]
        if self.directory is not None and self._path(digest).is_file():
            image = np.load(self._path(digest))
            self.disk_hits += 1
        else:
            image = np.asarray(self.generator.generate(key), dtype=np.float32)
            self.misses += 1
            if self.directory is not None:
                buffer = io.BytesIO()
                np.save(buffer, image)
                atomic_write_bytes(self._path(digest), buffer.getvalue())
        self._memory[digest] = image
        return image

    def stats(self) -> dict:
        served = self.memory_hits + self.disk_hits
        total = served + self.misses
        return {"entries_in_memory": len(self._memory), "memory_hits": self.memory_hits, "disk_hits": self.disk_hits,
                "generated": self.misses, "share_served_from_cache": served / total if total else None,
                "bytes_per_entry": 3 * 32 * 32 * 4 + 128}
