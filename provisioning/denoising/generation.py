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

    @classmethod
    def of(cls, server_prompt: str, device_prompt: str, t0: int, tk: int, ber: float, seed: int) -> "GenerationKey":
        """The canonical key: without server steps (``t0 = 0``) the server prompt and the link play
        no part, so they are blanked and every server shares the device's image."""
        if int(t0) == 0:
            server_prompt, ber = "", 0.0
        return cls(server_prompt, device_prompt, int(t0), int(tk), float(ber), int(seed))

    def digest(self, identity: str) -> str:
        text = json.dumps({"v": CACHE_VERSION, "generator": identity, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


class Generator(Protocol):
    """Makes the device image of a key: ``(3, 32, 32)`` float32 in [-1, 1]."""

    identity: str

    def generate(self, key: GenerationKey) -> np.ndarray: ...


def generate_many(generator: Generator, keys: list) -> list:
    """Images of ``keys``: the generator's batched ``generate_many`` when it has one, else one by one."""
    batched = getattr(generator, "generate_many", None)
    return list(batched(keys)) if batched is not None else [generator.generate(k) for k in keys]


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
    """The scene backend's UNet with the bit-flip link (CPU or CUDA).

    :meth:`generate_many` batches keys that share a schedule (``t0``, ``t_k``) and runs each
    distinct server part (server prompt, noise seed) once; the link draws the same bit flips as
    :meth:`generate` (same seeds), so both give the same image up to float rounding of batched
    convolutions.
    """

    def __init__(self, model, guidance_scale: float | None = None, batch_size: int = 128):
        self.model = model
        self.guidance_scale = guidance_scale
        self.batch_size = int(batch_size)
        self.identity = f"scenes-{model.name}-{weights_digest(model)}-g{model.guidance_scale if guidance_scale is None else guidance_scale}"

    def generate(self, key: GenerationKey) -> np.ndarray:
        import torch

        from provisioning.backend.channel import transmit_latent
        from provisioning.backend.scenes.generator import denoise_scenes, from_latent, scene_noise

        model, total = self.model, key.t0 + key.tk
        x = scene_noise(1, key.seed, model.device)
        if key.t0 > 0:
            server = denoise_scenes(model, x, [key.server_prompt], total, 0, key.t0, self.guidance_scale)
            x = torch.as_tensor(transmit_latent(server.float().cpu().numpy(), key.ber, rng=self._link_rng(key)).values,
                                dtype=torch.float32).to(model.device)
        out = denoise_scenes(model, x, [key.device_prompt], total, key.t0, None, self.guidance_scale)
        return from_latent(out).clamp(-1, 1).float().cpu().numpy()[0]

    @staticmethod
    def _link_rng(key: GenerationKey) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([key.seed, key.t0, key.tk, int(round(key.ber * 1e6))]))

    def generate_many(self, keys: list) -> list:
        """Images of ``keys`` (any order), batched by schedule; see the class docstring."""
        import torch

        from provisioning.backend.channel import transmit_latent
        from provisioning.backend.scenes.generator import denoise_scenes, from_latent, scene_noise

        model, images = self.model, {}
        groups: dict = {}
        for i, key in enumerate(keys):
            groups.setdefault((key.t0, key.tk), []).append(i)
        for (t0, tk), members in sorted(groups.items()):
            members.sort(key=lambda i: (keys[i].server_prompt, keys[i].seed, keys[i].device_prompt, keys[i].ber))
            for start in range(0, len(members), self.batch_size):
                chunk = [keys[i] for i in members[start:start + self.batch_size]]
                if t0 > 0:
                    parts = sorted({(k.server_prompt, k.seed) for k in chunk})
                    noise = torch.cat([scene_noise(1, seed, model.device) for _, seed in parts])
                    server = denoise_scenes(model, noise, [p for p, _ in parts], t0 + tk, 0, t0,
                                            self.guidance_scale).float().cpu().numpy()
                    where = {part: j for j, part in enumerate(parts)}
                    x = np.concatenate([transmit_latent(server[where[(k.server_prompt, k.seed)]][None], k.ber,
                                                        rng=self._link_rng(k)).values for k in chunk])
                    x = torch.as_tensor(x, dtype=torch.float32).to(model.device)
                else:
                    x = torch.cat([scene_noise(1, k.seed, model.device) for k in chunk])
                out = denoise_scenes(model, x, [k.device_prompt for k in chunk], t0 + tk, t0, None, self.guidance_scale)
                for i, image in zip(members[start:start + self.batch_size], from_latent(out).clamp(-1, 1).float().cpu().numpy()):
                    images[i] = image
        return [images[i] for i in range(len(keys))]


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
            self._store(digest, image)
            return image
        self._memory[digest] = image
        return image

    def contains(self, key: GenerationKey) -> bool:
        """Whether ``key``'s image is in memory or on disk (nothing is generated)."""
        digest = key.digest(self.generator.identity)
        return digest in self._memory or (self.directory is not None and self._path(digest).is_file())

    def fill(self, keys, progress=lambda done, total: None) -> dict:
        """Generate every key not yet cached, in batches (:func:`generate_many`); its counters.

        Returns ``{"keys", "already_cached", "generated", "seconds"}`` (wall seconds of generation).
        """
        import time

        keys = list(dict.fromkeys(keys))
        # schedule-major order: a chunk holds few (t0, t_k) groups, so the batches are large
        todo = sorted((k for k in keys if not self.contains(k)),
                      key=lambda k: (k.t0, k.tk, k.server_prompt, k.seed, k.device_prompt, k.ber))
        begin = time.perf_counter()
        step = 512
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            for key, image in zip(chunk, generate_many(self.generator, chunk)):
                self._store(key.digest(self.generator.identity), np.asarray(image, dtype=np.float32))
                self.misses += 1
            progress(min(start + step, len(todo)), len(todo))
        return {"keys": len(keys), "already_cached": len(keys) - len(todo), "generated": len(todo),
                "seconds": time.perf_counter() - begin}

    def _store(self, digest: str, image: np.ndarray) -> None:
        from market.atomic import atomic_write_bytes

        if self.directory is not None:
            buffer = io.BytesIO()
            np.save(buffer, image)
            atomic_write_bytes(self._path(digest), buffer.getvalue())
        self._memory[digest] = image

    def disk_bytes(self) -> int:
        """Bytes of this generator's entries on disk (0 without a directory)."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("*/*.npy"))

    def stats(self) -> dict:
        served = self.memory_hits + self.disk_hits
        total = served + self.misses
        return {"entries_in_memory": len(self._memory), "memory_hits": self.memory_hits, "disk_hits": self.disk_hits,
                "generated": self.misses, "share_served_from_cache": served / total if total else None,
                "bytes_per_entry": 3 * 32 * 32 * 4 + 128}
