"""The backend's diffusion models: shipped class-conditional digit UNets and any local pipeline.

What this module is for: name the three shipped model sizes (``digits-small``,
``digits-medium``, ``digits-large``: the differentiated models of the market's ASPs), build
their diffusers ``UNet2DModel`` from one config per size, and load either a shipped model
(by name or folder) or any local diffusers pipeline folder (``model_index.json``;
``DiffusionPipeline.from_pretrained(path, local_files_only=True)``, never a hub name).
The device is CUDA when present, the CPU otherwise.

Shipped model folder layout (``models/<name>/``)::

    unet/config.json, unet/diffusion_pytorch_model.safetensors   (fp16 weights)
    scheduler/scheduler_config.json                               (DDIM, for sampling)
    backend.json        image size, patch size, classes, default steps and guidance
    card.json, card.md  how it was trained and what it measures

May import: torch, diffusers, safetensors, numpy, ``market`` (errors, atomic IO).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.errors import MissingArtifactError, UserError

#: Folder of the shipped models.
MODELS_DIR = Path(__file__).resolve().parent / "models"
#: The shipped generator names, smallest (fastest, least accurate) first.
MODEL_NAMES: tuple[str, ...] = ("digits-small", "digits-medium", "digits-large")
#: The default model of ``measure``: the largest shipped one.
DEFAULT_MODEL: str = "digits-large"

#: UNet2DModel keyword arguments per shipped size (all: 1x16x16, 11 class embeddings).
UNET_CONFIGS: dict[str, dict[str, Any]] = {
    "digits-small": dict(
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ),
    "digits-medium": dict(
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ),
    "digits-large": dict(
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, attention_head_dim=16,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ),
}


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_unet(name: str):
    """A freshly initialised class-conditional ``UNet2DModel`` of the named size."""
    from diffusers import UNet2DModel

    from .data import IMAGE_SIZE, NUM_CLASSES

    if name not in UNET_CONFIGS:
        raise UserError(f"unknown model size {name!r}; choose one of {', '.join(UNET_CONFIGS)}")
    return UNet2DModel(
        sample_size=IMAGE_SIZE, in_channels=1, out_channels=1,
        num_class_embeds=NUM_CLASSES + 1, **UNET_CONFIGS[name],
    )


def training_scheduler():
    """The DDPM noise schedule every shipped model is trained with (1000 steps, cosine betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
        prediction_type="epsilon",
    )


def sampling_scheduler():
    """The DDIM sampler (eta 0, trailing spacing) built from the training schedule."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(training_scheduler().config, timestep_spacing="trailing")


@dataclass
class BackendModel:
    """A loaded generator.

    Attributes
    ----------
    name : str
        Shipped name or the folder it came from.
    device : str
        ``"cuda"`` or ``"cpu"``.
    unet, scheduler :
        The diffusers UNet and the sampling scheduler (shipped class-conditional models).
    pipeline :
        A generic diffusers pipeline (foreign local folders); ``None`` for shipped models.
    image_size : int
        Output side in pixels.
    channels : int
        Output channels.
    patch_size : int
        Side in pixels of one output token (tokens = (image_size / patch_size)^2).
    num_classes : int or None
        Digits 0..num_classes-1 can be requested; ``None`` when there is no class prompt.
    null_class : int or None
        Class index of "no prompt" (classifier-free guidance).
    default_steps : int
        Denoising steps used when none are given.
    guidance_scale : float
        Classifier-free guidance scale (1.0: none, one UNet call per step).
    card : dict
        The model card (empty for foreign pipelines).
    """

    name: str
    device: str
    unet: Any = None
    scheduler: Any = None
    pipeline: Any = None
    image_size: int = 16
    channels: int = 1
    patch_size: int = 4
    num_classes: int | None = 10
    null_class: int | None = 10
    default_steps: int = 20
    guidance_scale: float = 1.0
    card: dict = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Output size in tokens (patches of ``patch_size`` x ``patch_size`` pixels)."""
        per_side = max(1, self.image_size // self.patch_size)
        return per_side * per_side

    @property
    def bits(self) -> int:
        """Bits to transmit one output image (8-bit pixels)."""
        return self.image_size * self.image_size * self.channels * 8

    @property
    def parameters(self) -> int:
        """Number of parameters of the denoiser."""
        net = self.unet if self.unet is not None else getattr(self.pipeline, "unet", None)
        return int(sum(p.numel() for p in net.parameters())) if net is not None else 0


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """Folder of a shipped model name, or the given folder."""
    text = str(name_or_path)
    if text in MODEL_NAMES:
        return MODELS_DIR / text
    return Path(text)


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str | None = None) -> BackendModel:
    """Load a shipped model by name or folder, or any local diffusers pipeline folder.

    Parameters
    ----------
    name_or_path : str or Path
        ``"digits-small" | "digits-medium" | "digits-large"``, a folder with ``backend.json``
        (shipped layout), or a diffusers pipeline folder with ``model_index.json``.
        Hub names are never fetched (``local_files_only=True``).
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default: CUDA when present.

    Raises
    ------
    MissingArtifactError
        The folder or its weights are missing (message says how to make them).
    UserError
        The folder is neither layout.
    """
    import torch

    device = device or default_device()
    path = resolve_model_dir(name_or_path)
    if not path.is_dir():
        if str(name_or_path) in MODEL_NAMES:
            raise MissingArtifactError(
                f"{path}: shipped model missing; train it with "
                f"`python -m provisioning.backend.train generator --model {name_or_path}`"
            )
        raise UserError(f"{path}: no such model folder (give a shipped name: {', '.join(MODEL_NAMES)}, or a local folder)")
    if (path / "backend.json").is_file():
        from diffusers import DDIMScheduler, UNet2DModel

        meta = json.loads((path / "backend.json").read_text())
        weights = path / "unet" / "diffusion_pytorch_model.safetensors"
        if not weights.is_file():
            raise MissingArtifactError(
                f"{weights}: weights missing; train with "
                f"`python -m provisioning.backend.train generator --model {meta.get('name', path.name)}`"
            )
        unet = UNet2DModel.from_pretrained(str(path / "unet"), torch_dtype=torch.float32, local_files_only=True,
                                           low_cpu_mem_usage=False)
        unet = unet.to(device).eval()
        scheduler = DDIMScheduler.from_pretrained(str(path / "scheduler"), local_files_only=True)
        card_file = path / "card.json"
        card = json.loads(card_file.read_text()) if card_file.is_file() else {}
        return BackendModel(
            name=meta.get("name", path.name), device=device, unet=unet, scheduler=scheduler,
            image_size=int(meta["image_size"]), channels=int(meta.get("channels", 1)),
            patch_size=int(meta["patch_size"]), num_classes=int(meta["num_classes"]),
            null_class=int(meta["null_class"]), default_steps=int(meta["default_steps"]),
            guidance_scale=float(meta.get("guidance_scale", 1.0)), card=card,
        )
    if (path / "model_index.json").is_file():
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=False)
        pipe = pipe.to(device)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        unet = getattr(pipe, "unet", None)
        size = getattr(getattr(unet, "config", None), "sample_size", 64) or 64
        size = size[0] if isinstance(size, (tuple, list)) else int(size)
        vae_factor = int(getattr(pipe, "vae_scale_factor", 1) or 1)
        channels = 3 if getattr(pipe, "vae", None) is not None else int(unet.config.out_channels)
        return BackendModel(
            name=str(path), device=device, pipeline=pipe, image_size=size * vae_factor,
            channels=channels, patch_size=max(vae_factor, 4), num_classes=None, null_class=None,
            default_steps=25, guidance_scale=1.0,
        )
    raise UserError(f"{path}: not a model folder (needs backend.json or a diffusers model_index.json)")


def write_shipped_unet(unet, blank_unet, out_dir: Path, backend: dict) -> Path:
    """The shipped layout of every generator: ``unet/`` (fp16 safetensors: ``unet``'s weights
    loaded into ``blank_unet``, a fresh model of the same config, then halved), ``scheduler/``
    (the DDIM sampler) and ``backend.json`` (``backend``, written atomically)."""
    import torch

    from market.atomic import atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    blank_unet.load_state_dict(unet.state_dict())
    blank_unet.to(torch.float16).save_pretrained(str(out_dir / "unet"), safe_serialization=True)
    sampling_scheduler().save_pretrained(str(out_dir / "scheduler"))
    atomic_write_json(out_dir / "backend.json", backend)
    return out_dir


def save_shipped_model(unet, name: str, out_dir: Path, *, default_steps: int, guidance_scale: float) -> Path:
    """Write a trained digits UNet in the shipped layout (:func:`write_shipped_unet`)."""
    from .data import IMAGE_SIZE, NUM_CLASSES

    return write_shipped_unet(unet, build_unet(name), out_dir, {
        "name": name, "image_size": IMAGE_SIZE, "channels": 1, "patch_size": 4,
        "num_classes": NUM_CLASSES, "null_class": NUM_CLASSES,
        "default_steps": default_steps, "guidance_scale": guidance_scale,
    })
