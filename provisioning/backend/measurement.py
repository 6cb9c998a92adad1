"""Measured QoE of one model setting: accuracy, tokens, bits and latency with confidence intervals.

What this module is for: the backend's central measurement. For each of ``samples``
requests (digit ``i mod 10`` for request ``i``), the model generates ``trials`` images in
one batch from the request's own seed; every image is sent over the noisy link (8-bit
pixels, bit flips at ``ber``, :mod:`.channel`); the *user* keeps the received image that
the **scorer** rates highest for the requested digit (best-of-N, the provisioning paper's
trials); the **judge** then decides whether it shows the requested digit (accuracy). The
scorer and judge are different classifiers (:mod:`.evaluator`), so selection cannot make
accuracy trivially 1.

Latency per request = wall-clock denoising + decoding of its ``trials`` images (CUDA
synchronised) + transmission of their bits at ``link_rate_bps`` (0 when no rate is given).
Tokens = patches of the output image; bits = 8 bits per pixel per image sent.

May import: numpy, torch, diffusers, ``market`` (errors, atomic IO).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from market.errors import UserError

from .channel import transmit_images
from .models import BackendModel
from .sampling import generate, request_seed
from .stats import bootstrap_mean_interval, wilson_interval


@dataclass
class MeasureConfig:
    """One measurement setting (saved next to every result)."""

    model: str = "digits-large"
    """Model name or folder (informational; the loaded model is passed separately)."""
    steps: int | None = None
    """DDIM denoising steps (``None``: the model's default)."""
    trials: int = 1
    """Images generated per request; the user keeps the scorer's best (best-of-N)."""
    ber: float = 0.0
    """Bit error rate of the link, in [0, 1]."""
    samples: int = 100
    """Requests measured."""
    seed: int = 0
    """Run seed; request ``i`` uses ``SeedSequence([seed, i])``."""
    guidance_scale: float | None = None
    """Classifier-free guidance (``None``: the model's default)."""
    link_rate_bps: float | None = None
    """Link rate in bit/s for transmission time (``None``: transmission time not counted)."""
    warmup: bool = True
    """Run one untimed generation first (so one-off start-up costs do not enter latency)."""


@dataclass
class MeasureResult:
    """What one measurement found.

    Attributes
    ----------
    accuracy : float or None
        Share of requests whose kept image the judge assigns to the requested digit
        (``None`` for pipelines without an evaluator).
    accuracy_ci95 : (float, float) or None
        Wilson 95% interval of ``accuracy``.
    accuracy_no_channel : float or None
        The same with a perfect link (selection and judging on the images as generated).
    mean_quality : float or None
        Mean scorer probability of the requested digit for the kept image (q in [0, 1]).
    tokens : int
        Tokens per generated image (patches).
    bits : int
        Bits sent per request (all trials).
    bits_flipped : int
        Bits the channel flipped, over all requests.
    observed_ber : float
        ``bits_flipped / (bits * samples)``.
    latency_s : float
        Mean per-request latency in seconds (compute + transmission).
    latency_ci95 : (float, float)
        Percentile-bootstrap 95% interval of the mean latency.
    compute_s : float
        Mean per-request denoising + decoding time in seconds.
    transmission_s : float
        Per-request transmission time at the link rate in seconds (0 without a rate).
    seconds_per_token : float
        ``compute_s / tokens``: wall-clock compute seconds per output token of one request.
    cpu_s : float or None
        Mean per-request CPU time of this process (``time.process_time``) during generation,
        on the CPU device only (``None`` on CUDA). On a shared machine wall-clock time
        includes waiting for a core; CPU time is the work itself.
    cpu_seconds_per_token : float or None
        ``cpu_s / tokens``: the work per token at one full core (unit compute share).
    images_per_s : float
        Generated images per second of compute (all trials).
    device : str
        ``cuda`` or ``cpu`` (with the GPU name on CUDA).
    config : dict
        The :class:`MeasureConfig` used (with defaults resolved).
    per_request : dict
        Per request lists: ``label``, ``judged``, ``correct``, ``quality``, ``latency_s``.
    """

    accuracy: float | None
    accuracy_ci95: tuple[float, float] | None
    accuracy_no_channel: float | None
    mean_quality: float | None
    tokens: int
    bits: int
    bits_flipped: int
    observed_ber: float
    latency_s: float
    latency_ci95: tuple[float, float]
    compute_s: float
    transmission_s: float
    seconds_per_token: float
    cpu_s: float | None
    cpu_seconds_per_token: float | None
    images_per_s: float
    device: str
    config: dict
    per_request: dict = field(default_factory=dict, repr=False)

    def to_dict(self, per_request: bool = False) -> dict:
        """JSON-ready dict (per-request lists only when asked)."""
        out = asdict(self)
        if not per_request:
            out.pop("per_request")
        return out


def device_name(model: BackendModel) -> str:
    """``"cpu"`` or ``"cuda (<GPU name>)"``."""
    if str(model.device).startswith("cuda"):
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def validate_config(config: MeasureConfig, model: BackendModel) -> MeasureConfig:
    """Resolve defaults and reject bad values with a :class:`UserError` naming the option."""
    steps = model.default_steps if config.steps is None else config.steps
    guidance = model.guidance_scale if config.guidance_scale is None else config.guidance_scale
    checks = [
        ("steps", isinstance(steps, (int, np.integer)) and 1 <= steps <= 1000, "an integer in 1..1000"),
        ("trials", isinstance(config.trials, (int, np.integer)) and 1 <= config.trials <= 64, "an integer in 1..64"),
        ("samples", isinstance(config.samples, (int, np.integer)) and config.samples >= 1, "a positive integer"),
        ("ber", isinstance(config.ber, (int, float)) and math.isfinite(config.ber) and 0 <= config.ber <= 1,
         "a number in [0, 1]"),
        ("guidance_scale", isinstance(guidance, (int, float)) and math.isfinite(guidance) and guidance >= 0,
         "a finite number >= 0"),
        ("link_rate_bps", config.link_rate_bps is None or (
            isinstance(config.link_rate_bps, (int, float)) and math.isfinite(config.link_rate_bps)
            and config.link_rate_bps > 0), "a positive number of bit/s"),
    ]
    for name, ok, what in checks:
        if not ok:
            raise UserError(f"measure: {name} must be {what}, got {getattr(config, name)!r}")
    resolved = MeasureConfig(**asdict(config))
    resolved.steps = int(steps)
    resolved.guidance_scale = float(guidance)
    return resolved


def generate_requests(model: BackendModel, config: MeasureConfig):
    """Generate every request's trials; yields ``(label, images, compute_seconds)`` per request."""
    for index in range(config.samples):
        label = index % (model.num_classes or 1)
        labels = np.full(config.trials, label, dtype=np.int64)
        cpu_start = time.process_time()
        images, seconds = generate(model, labels, config.steps, request_seed(config.seed, index),
                                   guidance_scale=config.guidance_scale)
        yield index, label, images, seconds, time.process_time() - cpu_start


def measure(model: BackendModel, config: MeasureConfig, bers: list[float] | None = None,
            evaluator=None) -> MeasureResult | list[MeasureResult]:
    """Measure accuracy, tokens, bits and latency of ``model`` under ``config``.

    Parameters
    ----------
    model : BackendModel
        From :func:`provisioning.backend.load_model`.
    config : MeasureConfig
        The setting. ``config.ber`` is used unless ``bers`` is given.
    bers : list of float, optional
        Several BERs applied to the *same* generated images (one generation pass, common
        random bit flips); a list of results is returned, one per BER.
    evaluator : Evaluator, optional
        Judge and scorer (default: the shipped ones; foreign pipelines are not judged).

    Returns
    -------
    MeasureResult or list of MeasureResult
    """
    config = validate_config(config, model)
    ber_list = [config.ber] if bers is None else [float(b) for b in bers]
    for b in ber_list:
        if not (math.isfinite(b) and 0 <= b <= 1):
            raise UserError(f"measure: ber must be in [0, 1], got {b!r}")
    judged = model.num_classes is not None
    if judged and evaluator is None:
        from .evaluator import load_evaluator

        evaluator = load_evaluator()
    if config.warmup:
        generate(model, np.zeros(config.trials, dtype=np.int64), min(config.steps, 2), seed=0,
                 guidance_scale=config.guidance_scale)
    bits_per_image = model.bits
    bits = bits_per_image * config.trials
    transmission = bits / config.link_rate_bps if config.link_rate_bps else 0.0
    compute = []
    cpu = []
    labels = []
    per_ber = {b: {"judged": [], "quality": [], "flipped": 0} for b in ber_list}
    clean_correct = []
    for index, label, images, seconds, cpu_seconds in generate_requests(model, config):
        compute.append(seconds)
        cpu.append(cpu_seconds)
        labels.append(label)
        uniforms = np.random.default_rng([config.seed, index, 7]).random(bits)
        if judged:
            kept = int(np.argmax(evaluator.score(images, np.full(len(images), label))))
            clean_correct.append(int(evaluator.judge_labels(images[kept : kept + 1])[0] == label))
        for b in ber_list:
            rx = transmit_images(images, b, uniforms=uniforms)
            per_ber[b]["flipped"] += rx.bits_flipped
            if judged:
                scores = evaluator.score(rx.values, np.full(len(images), label))
                kept = int(np.argmax(scores))
                per_ber[b]["quality"].append(float(scores[kept]))
                per_ber[b]["judged"].append(int(evaluator.judge_labels(rx.values[kept : kept + 1])[0]))
    compute_arr = np.asarray(compute)
    on_cpu = str(model.device) == "cpu"
    latency = compute_arr + transmission
    results = []
    for b in ber_list:
        row = per_ber[b]
        correct = [int(j == lab) for j, lab in zip(row["judged"], labels)]
        resolved = asdict(config)
        resolved["ber"] = b
        results.append(MeasureResult(
            accuracy=float(np.mean(correct)) if judged else None,
            accuracy_ci95=wilson_interval(sum(correct), len(correct)) if judged else None,
            accuracy_no_channel=float(np.mean(clean_correct)) if judged else None,
            mean_quality=float(np.mean(row["quality"])) if judged else None,
            tokens=model.tokens,
            bits=bits,
            bits_flipped=row["flipped"],
            observed_ber=row["flipped"] / (bits * config.samples),
            latency_s=float(latency.mean()),
            latency_ci95=bootstrap_mean_interval(latency, seed=config.seed),
            compute_s=float(compute_arr.mean()),
            transmission_s=float(transmission),
            seconds_per_token=float(compute_arr.mean() / model.tokens),
            cpu_s=float(np.mean(cpu)) if on_cpu else None,
            cpu_seconds_per_token=float(np.mean(cpu) / model.tokens) if on_cpu else None,
            images_per_s=float(config.trials * config.samples / compute_arr.sum()),
            device=device_name(model),
            config=resolved,
            per_request={"label": labels, "judged": row["judged"], "correct": correct,
                         "quality": row["quality"], "latency_s": latency.tolist()},
        ))
    return results[0] if bers is None else results


def quality_scores(model: BackendModel, labels, trials: int, steps: int | None = None, ber: float = 0.0,
                   seed: int = 0, guidance_scale: float | None = None, evaluator=None) -> np.ndarray:
    """Per-request, per-trial quality scores ``q_ij`` for provisioning.

    Request ``i`` asks for digit ``labels[i]``; its ``trials`` images are generated from
    ``SeedSequence([seed, i])``, sent over the link at ``ber`` and scored by the scorer
    (probability of the requested digit, in [0, 1]).

    Returns
    -------
    np.ndarray
        ``(len(labels), trials)`` float64.
    """
    if evaluator is None:
        from .evaluator import load_evaluator

        evaluator = load_evaluator()
    if model.num_classes is None:
        raise UserError(f"{model.name}: quality scores need a class-conditional shipped model")
    steps = model.default_steps if steps is None else int(steps)
    out = np.zeros((len(labels), int(trials)))
    for i, label in enumerate(np.asarray(labels, dtype=np.int64)):
        images, _ = generate(model, np.full(int(trials), label), steps, request_seed(seed, i),
                             guidance_scale=guidance_scale)
        rx = transmit_images(images, ber, rng=np.random.default_rng([seed, i, 7]))
        out[i] = evaluator.score(rx.values, np.full(int(trials), label))
    return out
