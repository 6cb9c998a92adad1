"""Measured QoE of a scene model: intent accuracy per attribute, tokens, latency; the scene ASP.

What this module is for: the scene side of the backend's one measurement
(``provisioning.backend.measurement.measure_groups``). :class:`SceneBackend` makes a scene
generator a ``MeasuredModel``: request ``i`` asks for prompt ``i mod P`` of a *workload* (a list
of :class:`SceneRequest`: what the user types, what they want judged), its ``trials`` images
start from the request's own noise (``SeedSequence``-derived ``request_seed(seed, i)``), the batch
is denoised with classifier-free guidance, every image crosses the link as 8-bit RGB pixels (the
channel code of ``measure_groups``), the user keeps the trial whose received image best shows the
*prompt's* stated attributes (:meth:`SceneEvaluator.score`: the judge's geometric-mean probability
of them, "clean" included unless the prompt asks for a degradation), and the judge then checks
every attribute of the *intent* (:meth:`SceneEvaluator.verdict`).

Two workloads use it:

* ``incentive backend measure --model scenes-* --prompt ...`` (:func:`measure_scene`): one
  request (the prompt, judged against ``--intent``, default the prompt), ``samples`` times;
* the scene ASPs of calibration and ``incentive run`` (:func:`load_scene_backend`): the
  :data:`WORKLOAD_PROMPTS` fully specified prompts of :func:`asp_workload` (every content attribute
  stated, and "clean"), drawn from the world's prior with a fixed seed; accuracy = the share of
  requests whose kept image matches all seven content attributes (the cards' "all at once").

Words of an intent that are not in the judge's vocabulary are returned (and warned about by the
CLI); the model still runs on any text.

May import: numpy, torch, ``..measurement``, ``..channel``, ``..stats``, ``..sampling`` (seeds, CUDA
synchronisation), this package.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from market.errors import UserError

from ..sampling import request_seed, synchronise
from ..stats import bootstrap_mean_interval, wilson_interval
from .generator import SceneModel, denoise_scenes, from_latent, scene_noise
from .judge import HEAD_SIZES, JudgeReading, SceneJudge
from .world import ATTRIBUTES, VOCABULARY, caption, parse, sample_description

#: The attributes an image's content has (every attribute but the degradation).
CONTENT_ATTRIBUTES: tuple[str, ...] = tuple(a for a in ATTRIBUTES if a != "degradation")
#: Prompts of the scene ASPs' workload (request ``i`` asks for prompt ``i mod WORKLOAD_PROMPTS``).
WORKLOAD_PROMPTS: int = 20
#: Seed of the workload's descriptions (fixed: calibration and ``incentive run`` ask for the same prompts).
WORKLOAD_SEED: int = 0


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
    degraded_share: float
    """Share of kept (received) images the judge reads as blurred, noisy or cluttered."""
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


@dataclass(frozen=True)
class SceneRequest:
    """One prompt of a workload: the text sent, the attributes judged, the attributes selected on."""

    prompt: str
    """What the user sends (the model's text)."""
    intent: dict
    """Attribute -> value the judge checks (all must match for a correct request)."""
    stated: dict
    """Attribute -> value the prompt states (what best-of-N selection can see)."""


def scene_request(prompt: str, intent: str | None = None) -> SceneRequest:
    """The request of a prompt, judged against ``intent`` (default: the prompt)."""
    return SceneRequest(prompt, intent_of(prompt if intent is None else intent)[0], intent_of(prompt)[0])


def asp_workload(count: int = WORKLOAD_PROMPTS, seed: int = WORKLOAD_SEED) -> list[SceneRequest]:
    """The scene ASPs' workload: ``count`` descriptions from the world's prior, degradation "none",
    sent as their full caption and judged on the seven content attributes."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 404]))
    out = []
    for _ in range(count):
        description = replace(sample_description(rng), degradation="none")
        content = {a: getattr(description, a) for a in CONTENT_ATTRIBUTES}
        out.append(SceneRequest(caption(description), content, description.specified()))
    return out


def _index_table(wanted: list[dict]) -> np.ndarray:
    """``(P, 8)`` value index per request and attribute, ``-1`` where the request leaves it open."""
    return np.array([[VOCABULARY[a].index(w[a]) if a in w else -1 for a in ATTRIBUTES] for w in wanted],
                    dtype=np.int64).reshape(len(wanted), len(ATTRIBUTES))


def reading_code(indices: np.ndarray) -> np.ndarray:
    """One integer per image for the judge's reading ``(n, 8)`` (mixed radix over the heads)."""
    code = np.zeros(len(indices), dtype=np.int64)
    for k, size in enumerate(HEAD_SIZES):
        code = code * size + np.asarray(indices)[:, k]
    return code


def decode_reading(codes) -> np.ndarray:
    """Inverse of :func:`reading_code`: ``(n, 8)`` value indices."""
    codes = np.asarray(codes, dtype=np.int64).copy()
    out = np.zeros((len(codes), len(HEAD_SIZES)), dtype=np.int64)
    for k in range(len(HEAD_SIZES) - 1, -1, -1):
        out[:, k] = codes % HEAD_SIZES[k]
        codes //= HEAD_SIZES[k]
    return out


class SceneEvaluator:
    """The scene judge as a ``measure_groups`` evaluator for one workload (label = request index).

    ``score``: the user's best-of-N choice, the geometric mean of the judge's probabilities of the
    prompt's stated attributes, degradation "none" included when the prompt states no degradation
    (a quality in [0, 1]). ``verdict``: the judge's reading (:func:`reading_code`) and whether it
    matches every attribute of the intent.
    """

    #: What ``score`` is (recorded with the quality tables).
    score_description = "judge's geometric-mean probability of the prompt's stated attributes (and clean)"

    def __init__(self, judge: SceneJudge, requests: list[SceneRequest]):
        if not requests:
            raise UserError("a scene workload needs at least one prompt")
        self.judge = judge
        self.requests = list(requests)
        degradation = ATTRIBUTES.index("degradation")
        select = _index_table([r.stated for r in self.requests])
        select[select[:, degradation] < 0, degradation] = VOCABULARY["degradation"].index("none")
        self._select = select
        self._intent = _index_table([r.intent for r in self.requests])

    def log_probabilities(self, images) -> list[np.ndarray]:
        """Per attribute, ``(n, values)`` log-probabilities of the judge."""
        return list(self.judge.probabilities(images, log=True).values())

    def score(self, images, labels) -> np.ndarray:
        """``(n,)`` selection quality in [0, 1] of image ``j`` for request ``labels[j]``."""
        logs = self.log_probabilities(images)
        want = self._select[np.asarray(labels, dtype=np.int64)]
        rows = np.arange(len(want))
        total = np.zeros(len(want))
        for k, log_p in enumerate(logs):
            stated = want[:, k] >= 0
            total += np.where(stated, log_p[rows, np.maximum(want[:, k], 0)], 0.0)
        return np.exp(total / np.maximum(1, (want >= 0).sum(axis=1)))

    def verdict(self, images, labels) -> tuple[np.ndarray, np.ndarray]:
        """The judge's reading code of each image and whether it matches its request's whole intent."""
        read = np.stack([log_p.argmax(axis=1) for log_p in self.log_probabilities(images)], axis=1)
        want = self._intent[np.asarray(labels, dtype=np.int64)]
        return reading_code(read), np.all((want < 0) | (read == want), axis=1)


def _denoise_timed(model: SceneModel, noise, prompts: list[str], steps: int, guidance_scale: float | None,
                   negative_prompt: str) -> tuple[np.ndarray, float, float]:
    """Images ``(n, 3, 32, 32)`` in [-1, 1] from ``noise`` (on the CPU), with the CPU seconds and the
    wall seconds (CUDA synchronised) of text encoding (cached), denoising and the copy back."""
    x = noise.to(model.device)
    synchronise(model.device)
    wall, cpu = time.perf_counter(), time.process_time()
    x = denoise_scenes(model, x, list(prompts), steps, guidance_scale=guidance_scale, negative_prompt=negative_prompt)
    images = from_latent(x).clamp(-1, 1).float().cpu().numpy()
    synchronise(model.device)
    return images, time.process_time() - cpu, time.perf_counter() - wall


@dataclass
class SceneBackend:
    """A scene generator and its workload as a ``measurement.MeasuredModel`` (see the module docstring)."""

    model: SceneModel
    evaluator: SceneEvaluator
    name: str
    default_steps: int
    negative_prompt: str = ""
    #: The ``guidance_scale`` a measurement records (the generator's own default).
    guidance_scale: float = field(init=False)

    def __post_init__(self) -> None:
        self.guidance_scale = float(self.model.guidance_scale)

    @property
    def device(self) -> str:
        return self.model.device

    @property
    def tokens(self) -> int:
        """64: 4x4-pixel patches of the 32x32 output."""
        return self.model.tokens

    @property
    def bits(self) -> int:
        """32 x 32 x 3 x 8 = 24,576 bits per output image."""
        return self.model.bits

    @property
    def num_classes(self) -> int:
        """Prompts of the workload (request ``i`` asks for prompt ``i mod num_classes``)."""
        return len(self.evaluator.requests)

    def generate_batch(self, labels, requests, steps: int, guidance_scale: float | None):
        """One batch: images for per-image prompt ``labels``, each request's noise from its seed;
        compute seconds (CPU time on the CPU, wall-clock on CUDA) and wall seconds."""
        import torch

        noise = torch.cat([scene_noise(int(count), int(seed), "cpu") for count, seed in requests])
        prompts = [self.evaluator.requests[int(label)].prompt for label in labels]
        images, cpu, wall = _denoise_timed(self.model, noise, prompts, int(steps), guidance_scale,
                                           self.negative_prompt)
        return images, (wall if str(self.device).startswith("cuda") else cpu), wall


def load_scene_backend(name: str, device: str | None = None, steps: int | None = None, *,
                       label: str | None = None, workload: list[SceneRequest] | None = None) -> SceneBackend:
    """A shipped scene model (or folder) with the judge and the ASP workload (:func:`asp_workload`).

    ``steps`` replaces the model's default steps (an ASP configuration such as ``scenes-large@10``),
    ``label`` is the name its measurements carry (default: ``name``).
    """
    from .generator import load_scene_model
    from .judge import load_judge

    model = load_scene_model(name, device=device)
    evaluator = SceneEvaluator(load_judge(str(model.device)), workload or asp_workload())
    return SceneBackend(model, evaluator, label or str(name), int(steps or model.default_steps))


def generate_requests(model: SceneModel, prompts: list[str], trials: int, steps: int, seed: int,
                      guidance_scale: float | None, negative_prompt: str, batch_size: int
                      ) -> tuple[np.ndarray, float, list[float]]:
    """Images ``(requests, trials, 3, 32, 32)`` for one prompt per request, the CPU seconds, and
    the wall seconds of each batch (per image share)."""
    import torch

    flat_noise = torch.cat([scene_noise(trials, request_seed(seed, i), "cpu") for i in range(len(prompts))])
    flat_prompts = [p for p in prompts for _ in range(trials)]
    images, per_image, cpu_s = [], [], 0.0
    for lo in range(0, len(flat_prompts), batch_size):
        out, cpu, seconds = _denoise_timed(model, flat_noise[lo:lo + batch_size], flat_prompts[lo:lo + batch_size],
                                           steps, guidance_scale, negative_prompt)
        images.append(out)
        cpu_s += cpu
        per_image.extend([seconds / len(out)] * len(out))
    stacked = np.concatenate(images).reshape(len(prompts), trials, 3, 32, 32)
    return stacked, cpu_s, per_image


def measure_scene(model: SceneModel, judge: SceneJudge, cfg: SceneMeasureConfig) -> SceneMeasureResult:
    """One prompt, ``samples`` requests, through the backend's one measurement (``measure_groups``):
    generate, transmit, keep the best trial, judge against the intent (see the module docstring)."""
    from ..measurement import RequestGroup, measure_groups

    if not cfg.prompt or not cfg.prompt.strip():
        raise UserError("prompt: empty; give a text such as 'A grassland, with a red ball'")
    if cfg.samples < 1 or cfg.trials < 1:
        raise UserError("samples and trials must be >= 1")
    if not 0.0 <= cfg.ber <= 1.0:
        raise UserError(f"ber: {cfg.ber} is not in [0, 1]")
    steps = int(cfg.steps or model.default_steps)
    request = scene_request(cfg.prompt, cfg.intent)
    wanted, stated = request.intent, request.stated
    _, unchecked = intent_of(cfg.intent if cfg.intent is not None else cfg.prompt)
    backend = SceneBackend(model, SceneEvaluator(judge, [request]), model.name, steps, cfg.negative_prompt)
    (meas,) = measure_groups(backend, [RequestGroup(cfg.trials, cfg.samples, cfg.seed, (float(cfg.ber),))],
                             steps=steps, guidance_scale=cfg.guidance_scale, batch_images=cfg.batch_size)
    outcome = meas.outcomes[0]
    read = decode_reading(outcome.judged)
    labels = {a: [VOCABULARY[a][i] for i in read[:, k]] for k, a in enumerate(ATTRIBUTES)}
    hit = matches(JudgeReading(labels=labels, confidence={}, degradation_score=np.zeros(len(read))), wanted)
    matched = np.asarray(outcome.correct, dtype=bool)
    wall = np.asarray(meas.wall_s)
    unspecified = {a: {v: round(float(np.mean(np.asarray(labels[a]) == v)), 4) for v in VOCABULARY[a]}
                   for a in ATTRIBUTES if a not in wanted}
    clean = VOCABULARY["degradation"].index("none")
    return SceneMeasureResult(
        model=model.name, device=str(model.device),
        accuracy=float(matched.mean()), accuracy_ci95=wilson_interval(int(matched.sum()), cfg.samples),
        attribute_accuracy={a: float(hit[:, k].mean()) for k, a in enumerate(wanted)},
        attribute_accuracy_ci95={a: wilson_interval(int(hit[:, k].sum()), cfg.samples) for k, a in enumerate(wanted)},
        intent_attributes=wanted, prompt_attributes=stated, unchecked_intent_words=unchecked,
        unspecified_distribution=unspecified,
        degraded_share=float(np.mean(read[:, ATTRIBUTES.index("degradation")] != clean)),
        tokens=model.tokens, bits=model.bits * cfg.trials, bits_flipped=int(outcome.bits_flipped),
        latency_s=float(wall.mean()), latency_ci95=bootstrap_mean_interval(wall) if len(set(wall.tolist())) > 1
        else (float(wall.mean()),) * 2,
        image_latency_s=float(wall.mean() / cfg.trials), cpu_s=float(np.mean(meas.compute_s)),
        config={**asdict(cfg), "steps": steps,
                "guidance_scale": model.guidance_scale if cfg.guidance_scale is None else cfg.guidance_scale},
        matched=[bool(m) for m in matched],
    )
