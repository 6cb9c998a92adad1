"""Measured QoE of a scene model on a prompt: intent accuracy per attribute, tokens, latency.

What this module is for: the scene counterpart of the digits measurement. For ``samples``
requests of one prompt, the model generates ``trials`` images per request (request ``i``
from the noise of ``SeedSequence([seed, i])``), every image crosses the link (8-bit RGB
pixels, bit flips at ``ber``), the user keeps the trial whose received image best shows
the *prompt's* stated attributes (judge probabilities, degradation penalised), and the judge
then checks every attribute of the user's *intent* (which defaults to the prompt, and may be
more specific than what they typed: what prompt engineering closes). Accuracy = share of
requests whose kept image matches every checkable intent attribute. Words of the intent that
are not in the judge's vocabulary are returned (and warned about by the CLI); the model
still runs on any text.

Images are generated in batches of ``batch_size`` (all requests' trials flattened), so
``latency_s`` is the per-request share of batched wall-clock time; ``image_latency_s`` is
per image.

May import: numpy, torch, ``..channel``, ``..stats``, ``..sampling`` (seeds), this package.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from market.errors import UserError

from ..channel import transmit_images
from ..sampling import request_seed, synchronise
from ..stats import bootstrap_mean_interval, wilson_interval
from .generator import SceneModel, denoise_scenes, from_latent, scene_noise
from .judge import JudgeReading, SceneJudge
from .world import ATTRIBUTES, VOCABULARY, parse


@dataclass
class SceneMeasureConfig:
    """One scene measurement (saved next to its result)."""

    prompt: str
    """What the user sends."""
    intent: str | None = None
    """What the user wants (default: the prompt)."""
    negative_prompt: str = ""
    """Guidance's other branch ("" = unconditional)."""
    samples: int = 50
    """Requests."""
    trials: int = 1
    """Images per request; the best by the prompt's attributes is kept."""
    ber: float = 0.0
    """Bit error rate of the image link."""
    steps: int | None = None
    """DDIM steps (``None``: the model's default, 20)."""
    seed: int = 0
    guidance_scale: float | None = None
    """Classifier-free guidance (``None``: the model's default)."""
    batch_size: int = 32
    """Images generated per UNet batch."""


@dataclass
class SceneMeasureResult:
    """What one scene measurement found (``to_dict`` is the CLI's JSON)."""

    model: str
    device: str
    accuracy: float
    accuracy_ci95: tuple[float, float]
    attribute_accuracy: dict[str, float]
    attribute_accuracy_ci95: dict[str, tuple[float, float]]
    intent_attributes: dict[str, str]
    prompt_attributes: dict[str, str]
    unchecked_intent_words: list[str]
    unspecified_distribution: dict[str, dict[str, float]]
    mean_degradation_score: float
    tokens: int
    bits: int
    bits_flipped: int
    latency_s: float
    latency_ci95: tuple[float, float]
    image_latency_s: float
    cpu_s: float
    config: dict = field(default_factory=dict)
    matched: list[bool] = field(default_factory=list)

    def to_dict(self, per_request: bool = False) -> dict:
        out = asdict(self)
        if not per_request:
            out.pop("matched")
        return out


def intent_of(text: str) -> tuple[dict[str, str], list[str]]:
    """Checkable attributes of a text and the words the judge cannot check."""
    parsed = parse(text)
    return parsed.description.specified(), list(parsed.unknown_words)


def matches(reading: JudgeReading, wanted: dict[str, str]) -> np.ndarray:
    """``(n, len(wanted))`` bool: image ``i`` shows attribute value ``k`` of ``wanted``."""
    n = len(next(iter(reading.labels.values())))
    if not wanted:
        return np.ones((n, 0), dtype=bool)
    return np.stack([np.asarray(reading.labels[a]) == v for a, v in wanted.items()], axis=1)


def prompt_score(judge: SceneJudge, images: np.ndarray, stated: dict[str, str]) -> np.ndarray:
    """Selection score of each image for a prompt: mean log-probability of its stated attributes
    minus the degradation score (the user's best-of-N choice)."""
    import torch

    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).to(judge.device)
    with torch.inference_mode():
        outs = [torch.log_softmax(o.float(), 1).cpu().numpy() for o in judge.net(x)]
    score = np.zeros(len(images))
    for attr, value in stated.items():
        score += outs[ATTRIBUTES.index(attr)][:, VOCABULARY[attr].index(value)]
    none = np.exp(outs[ATTRIBUTES.index("degradation")][:, 0])
    return score / max(1, len(stated)) - (1.0 - none)


def generate_requests(model: SceneModel, prompts: list[str], trials: int, steps: int, seed: int,
                      guidance_scale: float | None, negative_prompt: str, batch_size: int
                      ) -> tuple[np.ndarray, float, list[float]]:
    """Images ``(requests, trials, 3, 32, 32)`` for one prompt per request, the CPU seconds, and
    the wall seconds of each batch (per image share)."""
    import torch

    noises = [scene_noise(trials, request_seed(seed, i), "cpu") for i in range(len(prompts))]
    flat_noise = torch.cat(noises)
    flat_prompts = [p for p in prompts for _ in range(trials)]
    images, per_image = [], []
    cpu0 = time.process_time()
    for lo in range(0, len(flat_prompts), batch_size):
        x = flat_noise[lo:lo + batch_size].to(model.device)
        synchronise(model.device)
        begin = time.perf_counter()
        x = denoise_scenes(model, x, flat_prompts[lo:lo + batch_size], steps, guidance_scale=guidance_scale,
                           negative_prompt=negative_prompt)
        out = from_latent(x).clamp(-1, 1).float().cpu().numpy()
        synchronise(model.device)
        seconds = time.perf_counter() - begin
        images.append(out)
        per_image.extend([seconds / len(out)] * len(out))
    stacked = np.concatenate(images).reshape(len(prompts), trials, 3, 32, 32)
    return stacked, time.process_time() - cpu0, per_image


def measure_scene(model: SceneModel, judge: SceneJudge, cfg: SceneMeasureConfig) -> SceneMeasureResult:
    """Generate, transmit, keep the best trial, judge against the intent (see the module docstring)."""
    if not cfg.prompt or not cfg.prompt.strip():
        raise UserError("prompt: empty; give a text such as 'A grassland, with a red ball'")
    if cfg.samples < 1 or cfg.trials < 1:
        raise UserError("samples and trials must be >= 1")
    if not 0.0 <= cfg.ber <= 1.0:
        raise UserError(f"ber: {cfg.ber} is not in [0, 1]")
    steps = int(cfg.steps or model.default_steps)
    wanted, unchecked = intent_of(cfg.intent if cfg.intent is not None else cfg.prompt)
    stated, _ = intent_of(cfg.prompt)
    images, cpu_s, per_image = generate_requests(
        model, [cfg.prompt] * cfg.samples, cfg.trials, steps, cfg.seed, cfg.guidance_scale, cfg.negative_prompt,
        cfg.batch_size)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7]))
    sent = transmit_images(images.reshape(-1, 3, 32, 32), cfg.ber, rng=rng)
    received = sent.values.reshape(images.shape)
    flat = received.reshape(-1, 3, 32, 32)
    scores = prompt_score(judge, flat, stated).reshape(cfg.samples, cfg.trials)
    kept = received[np.arange(cfg.samples), scores.argmax(axis=1)]
    reading = judge.read(kept)
    hit = matches(reading, wanted)
    matched = hit.all(axis=1)
    per_request = np.asarray(per_image).reshape(cfg.samples, cfg.trials).sum(axis=1)
    unspecified = {a: {v: round(float(np.mean(np.asarray(reading.labels[a]) == v)), 4) for v in VOCABULARY[a]}
                   for a in ATTRIBUTES if a not in wanted}
    return SceneMeasureResult(
        model=model.name, device=str(model.device),
        accuracy=float(matched.mean()), accuracy_ci95=wilson_interval(int(matched.sum()), cfg.samples),
        attribute_accuracy={a: float(hit[:, k].mean()) for k, a in enumerate(wanted)},
        attribute_accuracy_ci95={a: wilson_interval(int(hit[:, k].sum()), cfg.samples) for k, a in enumerate(wanted)},
        intent_attributes=wanted, prompt_attributes=stated, unchecked_intent_words=unchecked,
        unspecified_distribution=unspecified, mean_degradation_score=float(reading.degradation_score.mean()),
        tokens=model.tokens, bits=model.bits * cfg.trials, bits_flipped=int(sent.bits_flipped),
        latency_s=float(per_request.mean()), latency_ci95=bootstrap_mean_interval(per_request),
        image_latency_s=float(np.mean(per_image)), cpu_s=float(cpu_s / cfg.samples),
        config={**asdict(cfg), "steps": steps,
                "guidance_scale": model.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale},
        matched=[bool(m) for m in matched],
    )
