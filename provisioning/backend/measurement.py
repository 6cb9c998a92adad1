"""Measured QoE of one model setting: accuracy, tokens, bits and latency with confidence intervals.

What this module is for: the backend's one measurement, :func:`measure_groups`, used by
``incentive backend measure`` (:func:`measure`), ``incentive backend calibrate``
(``provisioning.backend.calibration``) and ``incentive run`` (each user's requests) alike.

A *group* (:class:`RequestGroup`) is ``samples`` requests under one setting (trials, BERs,
seed): one user of the pipeline, or one point of a calibration sweep. Request ``i`` of a group
asks for digit ``i mod 10``; its ``trials`` images start from the request's own seeded noise
(``request_seed(seed, i)``), so a request's images do not depend on which other requests share
its batch. Requests of all groups are packed into batches of at most :data:`BATCH_IMAGES`
images (a request's trials stay together) and denoised together; every image is sent over the
noisy link (8-bit pixels, bit flips at each BER from the request's own uniforms, so every BER
sees the same images and the same random numbers, :mod:`.channel`); the *user* keeps the
received image that the **scorer** rates highest for the requested digit (best-of-N, the
provisioning paper's trials); the **judge** then decides whether it shows the requested digit.
The scorer and judge are different classifiers (:mod:`.evaluator`), so selection cannot make
accuracy trivially 1.

Compute per request, at unit compute share: a batch's compute time is shared among its
images, a request's is its images' share (``trials x`` the per-image time). On the CPU the
compute time is this process's CPU time (``time.process_time``; run torch single-threaded), so
other load on a shared machine stays out of it; on CUDA the synchronised wall-clock. Batching
is what a server does with many requests, and it makes a measurement several times faster on
a CPU than one request per call. Tokens = patches of the output image; bits = 8 bits per
pixel per image sent.

**One measurement for every kind of model.** The digits models (:class:`BackendModel`) are
measured by the code below directly; any other generator implements :class:`MeasuredModel`
(its requests' labels, a batched ``generate_batch`` from the requests' own seeded noise, and
an evaluator with ``score`` for best-of-N selection and ``verdict`` for accuracy). The scene
models do (``provisioning.backend.scenes.measure.SceneBackend``: request ``i`` asks for prompt
``i mod P`` of a seeded workload; the verdict is the intent match). Batching, the channel,
best-of-N selection, the timings and the records are the same code for all of them.
:func:`load_measured_model` is the registry: a shipped digits or scene name, optionally with
``@STEPS`` (the same model at other default denoising steps, e.g. ``scenes-large@10``: another
ASP configuration), or a folder.

May import: numpy, torch, diffusers, ``market`` (errors, atomic IO); ``.scenes`` lazily (the
registry and the scene adapter).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from market.errors import UserError

from .channel import dequantise_unit, quantise_unit, transmit_images
from .models import MODEL_NAMES, BackendModel
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
        Mean per-request latency in seconds: the request's wall-clock share of its batch
        (denoising + decoding, batched as :func:`measure_groups` does) + transmission.
    latency_ci95 : (float, float)
        Percentile-bootstrap 95% interval of the mean latency.
    compute_s : float
        Mean per-request denoising + decoding wall-clock seconds (its share of the batch).
    transmission_s : float
        Per-request transmission time at the link rate in seconds (0 without a rate).
    seconds_per_token : float
        ``compute_s / (trials x tokens)``: wall-clock compute seconds per generated token.
    cpu_s : float or None
        Mean per-request CPU time of this process (``time.process_time``) during generation,
        on the CPU device only (``None`` on CUDA). On a shared machine wall-clock time
        includes waiting for a core; CPU time is the work itself.
    cpu_seconds_per_token : float or None
        ``cpu_s / (trials x tokens)``: the work per generated token at one full core (unit
        compute share); the ASP profile's ``seconds_per_token`` on the CPU.
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


@runtime_checkable
class MeasuredModel(Protocol):
    """A generator :func:`measure_groups` can measure besides the digits :class:`BackendModel`.

    Attributes: ``name``, ``device``, ``default_steps``, ``guidance_scale``, ``tokens`` (patches of
    one output), ``bits`` (bits of one output, 8 per pixel and channel), ``num_classes`` (request
    ``i`` asks for label ``i mod num_classes``) and ``evaluator``, which has
    ``score(images, labels) -> (n,)`` (a quality in [0, 1]; the user keeps the best of a request's
    received trials) and ``verdict(images, labels) -> (judged, correct)`` (an integer code of what
    the judge read, and whether that is what the request asked for).
    """

    name: str
    device: str
    default_steps: int
    guidance_scale: float
    num_classes: int
    evaluator: Any

    @property
    def tokens(self) -> int: ...

    @property
    def bits(self) -> int: ...

    def generate_batch(self, labels, requests, steps: int, guidance_scale: float | None):
        """Images ``(n, C, H, W)`` in [-1, 1] for per-image ``labels`` and per-request
        ``(trials, seed)`` (each request's noise from its own seed), compute seconds (CPU time on
        the CPU, synchronised wall-clock on CUDA) and wall seconds of the batch."""


#: Separator of a model configuration's default denoising steps (``"scenes-large@10"``).
STEPS_SEPARATOR = "@"


def split_model_spec(spec: str) -> tuple[str, int | None]:
    """``"scenes-large@10"`` -> ``("scenes-large", 10)``; ``"digits-large"`` -> ``("digits-large", None)``.

    Raises
    ------
    UserError
        When the part after ``@`` is not an integer in 1..1000.
    """
    text = str(spec)
    base, sep, steps = text.rpartition(STEPS_SEPARATOR)
    if not sep:
        return text, None
    if not steps.isdigit() or not 1 <= int(steps) <= 1000:
        raise UserError(f"model {text!r}: the steps after {STEPS_SEPARATOR!r} must be an integer in 1..1000")
    return base, int(steps)


def measured_model_names() -> tuple[str, ...]:
    """Every shipped model :func:`load_measured_model` knows (digits, then scenes)."""
    from .scenes.generator import SCENE_MODEL_NAMES

    return tuple(MODEL_NAMES) + tuple(SCENE_MODEL_NAMES)


def is_measured_model(spec: str) -> bool:
    """Whether ``spec`` names a shipped model (optionally ``@STEPS``) or a folder with a shipped-layout
    model (``backend.json``); a malformed ``@STEPS`` is not one."""
    from pathlib import Path

    try:
        base, _ = split_model_spec(spec)
    except UserError:
        return False
    return base in measured_model_names() or (Path(base) / "backend.json").is_file()


def load_measured_model(spec: str, device: str | None = None):
    """Load a model for :func:`measure_groups`: a digits :class:`BackendModel` (shipped name, shipped-
    layout folder or a diffusers pipeline folder) or a scene :class:`MeasuredModel`; ``NAME@STEPS``
    sets its default steps (and its name is the whole spec, so it is its own ASP configuration)."""
    from dataclasses import replace

    from .scenes.cli import is_scene_model

    base, steps = split_model_spec(spec)
    if is_scene_model(base):
        from .scenes.measure import load_scene_backend

        return load_scene_backend(base, device=device, steps=steps, label=str(spec))
    from .models import load_model

    model = load_model(base, device=device)
    return model if steps is None else replace(model, name=str(spec), default_steps=steps)


#: Most images denoised in one backend call (requests are packed; a request's trials stay together).
BATCH_IMAGES = 64


@dataclass(frozen=True)
class RequestGroup:
    """``samples`` requests measured under one setting (one pipeline user, one calibration point).

    Attributes
    ----------
    trials : int
        Images per request; the scorer's best received one is kept (best-of-N).
    samples : int
        Requests; request ``i`` asks for digit ``i mod classes``.
    seed : int
        Request ``i`` draws its noise from ``request_seed(seed, i)`` and its bit flips from
        ``default_rng([seed, i, 7])``.
    bers : tuple of float
        Bit error rates applied to the same images (common random numbers).
    """

    trials: int
    samples: int
    seed: int
    bers: tuple = (0.0,)


@dataclass
class BerOutcome:
    """What one group's requests gave at one BER.

    Attributes
    ----------
    ber : float
    correct : list of int
        Per request: 1 when the judge assigns the kept image to the requested digit.
    judged : list of int
        Per request: the judge's label of the kept image.
    quality : list of float
        Per request: the scorer's probability of the requested digit for the kept image.
    bits_flipped : int
        Over all requests.
    """

    ber: float
    correct: list
    judged: list
    quality: list
    bits_flipped: int

    @property
    def accuracy(self) -> float:
        """Share of correct requests."""
        return float(np.mean(self.correct)) if self.correct else float("nan")

    @property
    def accuracy_ci95(self) -> tuple[float, float]:
        """Wilson 95% interval of :attr:`accuracy`."""
        return wilson_interval(int(sum(self.correct)), len(self.correct))


@dataclass
class GroupMeasurement:
    """One group's measurement (:func:`measure_groups`).

    Attributes
    ----------
    group : RequestGroup
    labels : list of int
        Requested digit per request.
    outcomes : list of BerOutcome
        One per ``group.bers``, in order.
    correct_no_channel : list of int
        Per request, judged on the images as generated (perfect link).
    compute_s : list of float
        Per request: compute seconds at unit compute (CPU time on the CPU, synchronised wall-clock
        on CUDA), the request's share of its batch.
    wall_s : list of float
        Per request: its share of the batch's wall-clock seconds.
    tokens : int
        Tokens of one output image (patches).
    bits_per_output : int
        Bits of one output image (8-bit pixels).
    steps : int
        Denoising steps.
    device : str
    """

    group: RequestGroup
    labels: list
    outcomes: list
    correct_no_channel: list
    compute_s: list
    wall_s: list
    tokens: int
    bits_per_output: int
    steps: int
    device: str

    @property
    def mean_compute_s(self) -> float:
        """Mean compute seconds per request at unit compute."""
        return float(np.mean(self.compute_s))

    def compute_ci95(self, seed: int = 0) -> tuple[float, float]:
        """Percentile-bootstrap 95% interval of :attr:`mean_compute_s` over requests."""
        if len(set(self.compute_s)) <= 1:
            return (self.mean_compute_s, self.mean_compute_s)
        return tuple(float(c) for c in bootstrap_mean_interval(self.compute_s, seed=seed))

    @property
    def seconds_per_token(self) -> float:
        """Compute seconds per generated token at unit compute: ``compute / (trials x tokens)``."""
        return self.mean_compute_s / (self.group.trials * self.tokens)


def _batches(groups, max_images: int) -> list[list[tuple[int, int]]]:
    """Pack every (group, request) pair, in order, into batches of at most ``max_images`` images."""
    batches, current, images = [], [], 0
    for g, group in enumerate(groups):
        for i in range(group.samples):
            if current and images + group.trials > max_images:
                batches.append(current)
                current, images = [], 0
            current.append((g, i))
            images += group.trials
    if current:
        batches.append(current)
    return batches


def _generate_batch(model: BackendModel, groups, batch, labels_of, steps: int, guidance_scale):
    """Images of one batch (each request from its own seeded noise) and (compute s, wall s)."""
    import torch

    from .sampling import denoise, initial_noise, synchronise

    labels = np.concatenate([np.full(groups[g].trials, labels_of(g, i), dtype=np.int64) for g, i in batch])
    if not isinstance(model, BackendModel):  # a MeasuredModel (scenes): its own batched generation
        return model.generate_batch(labels, [(groups[g].trials, request_seed(groups[g].seed, i)) for g, i in batch],
                                    steps, guidance_scale)
    if model.unet is None:  # a foreign pipeline: one call per request
        parts, seconds = [], 0.0
        cpu = time.process_time()
        for g, i in batch:
            images, sec = generate(model, labels[:groups[g].trials], steps, request_seed(groups[g].seed, i),
                                   guidance_scale=guidance_scale)
            parts.append(images)
            seconds += sec
        cpu = time.process_time() - cpu
        return np.concatenate(parts), (seconds if str(model.device).startswith("cuda") else cpu), seconds
    noise = torch.cat([initial_noise(model, groups[g].trials, request_seed(groups[g].seed, i)) for g, i in batch])
    synchronise(model.device)
    wall, cpu = time.perf_counter(), time.process_time()
    x = denoise(model, noise, labels, steps, guidance_scale=guidance_scale)
    images = x.clamp(-1, 1).float().cpu().numpy()
    synchronise(model.device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return images, (wall if str(model.device).startswith("cuda") else cpu), wall


def _kept(scores: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """Index (into the batch) of each request's best-scored image (requests hold ``trials`` images in order)."""
    starts = np.concatenate([[0], np.cumsum(trials)[:-1]])
    return np.array([start + int(np.argmax(scores[start:start + n])) for start, n in zip(starts, trials)])


def _verdict(evaluator, images, labels) -> tuple[np.ndarray, np.ndarray]:
    """What the judge read on each kept image and whether it is what the request asked for: an
    evaluator's own ``verdict`` (a scene intent match), else the digits judge's label == the digit."""
    verdict = getattr(evaluator, "verdict", None)
    if verdict is not None:
        return verdict(images, labels)
    judged = evaluator.judge_labels(images)
    return judged, judged == labels


def _judge_batch(images, batch, groups, trials, labels, evaluator, store) -> None:
    """Channel, best-of-N selection and judging of one batch, vectorised over its requests.

    Request ``i`` of group ``g`` flips its bits with its own uniforms ``default_rng([seed, i, 7])``
    at each of its group's BERs (one uniform per bit; a bit flips where ``u < BER``), exactly as
    ``provisioning.backend.channel.transmit_images`` does for one request. Without an
    ``evaluator`` (a foreign pipeline) only the flipped bits are counted.
    """
    per_image = np.repeat(labels, trials)
    if evaluator is not None:
        kept = _kept(evaluator.score(images, per_image), trials)
        _, right = _verdict(evaluator, images[kept], labels)
        for (g, _), ok in zip(batch, right):
            store[g]["clean"].append(int(ok))
    quantised = quantise_unit(images, -1.0, 1.0)
    bits = np.unpackbits(quantised.reshape(-1))
    bits_per_request = trials * (quantised[0].size * 8)
    uniforms = np.concatenate([np.random.default_rng([groups[g].seed, i, 7]).random(int(n))
                               for (g, i), n in zip(batch, bits_per_request)])
    offsets = np.concatenate([[0], np.cumsum(bits_per_request)[:-1]])
    for b in range(max(len(groups[g].bers) for g, _ in batch)):
        ber = np.array([groups[g].bers[b] if b < len(groups[g].bers) else -1.0 for g, _ in batch])
        mask = uniforms < np.repeat(ber, bits_per_request)
        flipped = np.add.reduceat(mask, offsets)
        if evaluator is not None:
            received = dequantise_unit(np.packbits(bits ^ mask.astype(np.uint8)).reshape(quantised.shape), -1.0, 1.0)
            scores = evaluator.score(received, per_image)
            kept = _kept(scores, trials)
            verdict, right = _verdict(evaluator, received[kept], labels)
        for r, (g, _) in enumerate(batch):
            if b < len(groups[g].bers):
                out = store[g]["ber"][b]
                out["flipped"] += int(flipped[r])
                if evaluator is None:
                    continue
                out["quality"].append(float(scores[kept[r]]))
                out["judged"].append(int(verdict[r]))
                out["correct"].append(int(right[r]))


def measure_groups(model: BackendModel, groups, *, steps: int | None = None, guidance_scale: float | None = None,
                   evaluator=None, batch_images: int = BATCH_IMAGES, warmup: bool = True,
                   progress=None) -> list[GroupMeasurement]:
    """Measure every group's requests, batched across groups (the backend's one measurement).

    Parameters
    ----------
    model : BackendModel or MeasuredModel
        A digits model, or any :class:`MeasuredModel` (a scene model from :func:`load_measured_model`).
    groups : sequence of RequestGroup
    steps, guidance_scale : optional
        Denoising steps and guidance (default: the model's).
    evaluator : Evaluator, optional
        The digits judge and scorer (default: the shipped ones; a model without classes is not
        judged). A :class:`MeasuredModel` is judged by its own ``evaluator``, never by this one.
    batch_images : int
        Most images per backend call.
    warmup : bool
        One untimed generation first (one-off start-up costs stay out of the timings).
    progress : callable, optional
        ``progress(requests_done)`` after each batch.

    Returns
    -------
    list of GroupMeasurement
        In the order of ``groups``.
    """
    groups = list(groups)
    steps = int(model.default_steps if steps is None else steps)
    classes = model.num_classes or 1
    judged = model.num_classes is not None
    digits = isinstance(model, BackendModel)
    if not digits:
        evaluator = model.evaluator
    elif judged and evaluator is None:
        from .evaluator import load_evaluator

        evaluator = load_evaluator()
    if warmup and groups and digits:
        generate(model, np.zeros(1, dtype=np.int64), min(steps, 2), seed=0, guidance_scale=guidance_scale)
    elif warmup and groups:
        model.generate_batch(np.zeros(1, dtype=np.int64), [(1, 0)], min(steps, 2), guidance_scale)
    labels_of = lambda g, i: i % classes  # noqa: E731
    store = [{"labels": [], "compute": [], "wall": [], "clean": [],
              "ber": [{"correct": [], "judged": [], "quality": [], "flipped": 0} for _ in group.bers]}
             for group in groups]
    done = 0
    for batch in _batches(groups, max(1, int(batch_images))):
        images, compute, wall = _generate_batch(model, groups, batch, labels_of, steps, guidance_scale)
        trials = np.array([groups[g].trials for g, _ in batch])
        labels = np.array([labels_of(g, i) for g, i in batch])
        for (g, i), n in zip(batch, trials):
            rec = store[g]
            rec["labels"].append(labels_of(g, i))
            rec["compute"].append(compute * n / len(images))
            rec["wall"].append(wall * n / len(images))
        _judge_batch(images, batch, groups, trials, labels, evaluator if judged else None, store)
        done += len(batch)
        if progress is not None:
            progress(done)
    device = device_name(model)
    return [GroupMeasurement(
        group=group, labels=rec["labels"],
        outcomes=[BerOutcome(float(ber), o["correct"], o["judged"], o["quality"], int(o["flipped"]))
                  for ber, o in zip(group.bers, rec["ber"])],
        correct_no_channel=rec["clean"], compute_s=rec["compute"], wall_s=rec["wall"], tokens=int(model.tokens),
        bits_per_output=int(model.bits), steps=steps, device=device) for group, rec in zip(groups, store)]


def measure(model: BackendModel, config: MeasureConfig, bers: list[float] | None = None,
            evaluator=None) -> MeasureResult | list[MeasureResult]:
    """Measure accuracy, tokens, bits and latency of ``model`` under ``config`` (one group of
    :func:`measure_groups`).

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
    group = RequestGroup(trials=int(config.trials), samples=int(config.samples), seed=int(config.seed),
                         bers=tuple(ber_list))
    (meas,) = measure_groups(model, [group], steps=config.steps, guidance_scale=config.guidance_scale,
                             evaluator=evaluator, warmup=config.warmup)
    return_list = [measure_result(meas, config, b) for b in range(len(ber_list))]
    return return_list[0] if bers is None else return_list


def measure_result(meas: GroupMeasurement, config: MeasureConfig, index: int = 0) -> MeasureResult:
    """The :class:`MeasureResult` of one BER of a group measurement (``backend measure``'s report)."""
    judged = bool(meas.outcomes[index].correct)
    out = meas.outcomes[index]
    bits = meas.bits_per_output * meas.group.trials
    transmission = bits / config.link_rate_bps if config.link_rate_bps else 0.0
    compute = np.asarray(meas.compute_s)
    wall = np.asarray(meas.wall_s)
    latency = wall + transmission
    on_cpu = not meas.device.startswith("cuda")
    resolved = asdict(config)
    resolved["ber"] = out.ber
    return MeasureResult(
        accuracy=out.accuracy if judged else None,
        accuracy_ci95=out.accuracy_ci95 if judged else None,
        accuracy_no_channel=float(np.mean(meas.correct_no_channel)) if judged else None,
        mean_quality=float(np.mean(out.quality)) if judged else None,
        tokens=meas.tokens, bits=bits, bits_flipped=out.bits_flipped,
        observed_ber=out.bits_flipped / (bits * meas.group.samples),
        latency_s=float(latency.mean()),
        latency_ci95=bootstrap_mean_interval(latency, seed=config.seed) if len(set(latency.tolist())) > 1
        else (float(latency.mean()),) * 2,
        compute_s=float(wall.mean()), transmission_s=float(transmission),
        seconds_per_token=float(wall.mean() / (meas.group.trials * meas.tokens)),
        cpu_s=float(compute.mean()) if on_cpu else None,
        cpu_seconds_per_token=float(compute.mean() / (meas.group.trials * meas.tokens)) if on_cpu else None,
        images_per_s=float(meas.group.trials * meas.group.samples / max(wall.sum(), 1e-12)),
        device=meas.device, config=resolved,
        per_request={"label": meas.labels, "judged": out.judged, "correct": out.correct, "quality": out.quality,
                     "latency_s": latency.tolist()})


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
