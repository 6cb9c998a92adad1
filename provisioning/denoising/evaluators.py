"""Personality-conditioned evaluators: Big Five users scoring images (the paper's section 4.1, eq. (25)).

What this module is for: the QoE ``Q_k`` a user with Big Five traits ``u_k`` gives an image
generated for their prompt. The paper asks an LLM agent primed with the traits; this module's
built-in :class:`BigFiveEvaluator` STANDS IN for that agent: a documented linear model from the
traits to weights on measured properties of the image and its prompt (``docs/denoising.md``
cites the finding behind each link), plus a seeded stochastic part whose spread grows as the
image's quality falls (the paper's Fig. 10). A user who has an LLM or VLM plugs it in through
:class:`LanguageModelEvaluator` (a callable from a text request and an image to a score);
:class:`ScriptedLanguageModel` is its test double.

Measured properties (:class:`ImageProperties`, all in [0, 1], images ``(n, 3, 32, 32)`` in [-1, 1]):

- ``fidelity``: mean judge probability of the attribute values the user's own prompt states;
- ``fusion``: mean judge probability of the values the *other* prompt (the server's) states
  where it differs from the own prompt (the "tiger features on the dog");
- ``colourfulness``: Hasler and Suesstrunk's M (``sd(rg,yb) + 0.3 mean(rg,yb)`` on 0-255 RGB),
  divided by 150 and clipped;
- ``brightness``: mean Rec. 601 luma;
- ``clutter``: mean gradient magnitude of the luma (edge density), divided by 0.5 and clipped;
- ``artefacts``: the judge's degradation score ``1 - P(none)``.

The judge is the scene backend's (``load_judge``); the colour, brightness and clutter measures
are a few lines of numpy (no library in our stack ships them for raw arrays).

May import: numpy, ``market`` (errors), the public API of ``provisioning.backend.scenes``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from market.errors import UserError

TRAITS: tuple[str, ...] = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
PROPERTIES: tuple[str, ...] = ("fidelity", "fusion", "colourfulness", "brightness", "clutter", "artefacts")


@dataclass(frozen=True)
class Personality:
    """A Big Five vector ``u = (O, C, E, A, N)``, each in [0, 1]."""

    openness: float
    conscientiousness: float
    extraversion: float
    agreeableness: float
    neuroticism: float

    def __post_init__(self) -> None:
        for name in TRAITS:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                raise ValueError(f"{name}: {value!r} is not a number in [0, 1]")

    def vector(self) -> np.ndarray:
        """``(5,)`` float array in trait order."""
        return np.array([getattr(self, t) for t in TRAITS], dtype=float)


#: The paper's generative agents (Fig. 10 caption).
GA1 = Personality(openness=0.1, conscientiousness=0.8, extraversion=0.7, agreeableness=0.8, neuroticism=0.1)
GA2 = Personality(openness=0.9, conscientiousness=0.2, extraversion=0.1, agreeableness=0.1, neuroticism=0.5)
PRESETS: dict[str, Personality] = {"GA1": GA1, "GA2": GA2}


@dataclass
class ImageProperties:
    """Measured properties of ``n`` images (each a ``(n,)`` array in [0, 1]; see the module docstring)."""

    fidelity: np.ndarray
    fusion: np.ndarray
    colourfulness: np.ndarray
    brightness: np.ndarray
    clutter: np.ndarray
    artefacts: np.ndarray

    def matrix(self) -> np.ndarray:
        """``(n, 6)`` in :data:`PROPERTIES` order."""
        return np.stack([getattr(self, p) for p in PROPERTIES], axis=1)

    def row(self, i: int) -> dict[str, float]:
        return {p: float(getattr(self, p)[i]) for p in PROPERTIES}


def _stated(prompt: str) -> dict[str, str]:
    from provisioning.backend.scenes import parse

    stated = parse(prompt).description.specified()
    stated.pop("degradation", None)
    return stated


def _mean_probability(probs: dict[str, np.ndarray], wanted: dict[str, str], n: int) -> np.ndarray:
    from provisioning.backend.scenes import VOCABULARY

    if not wanted:
        return np.zeros(n)
    return np.mean([probs[a][:, VOCABULARY[a].index(v)] for a, v in wanted.items()], axis=0)


def colour_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colourfulness, brightness and clutter of images ``(n, 3, H, W)`` in [-1, 1] (each ``(n,)``, [0, 1])."""
    rgb = (np.clip(np.asarray(images, dtype=float), -1, 1) + 1.0) * 127.5
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    hasler = (np.sqrt(rg.std(axis=(1, 2)) ** 2 + yb.std(axis=(1, 2)) ** 2)
              + 0.3 * np.sqrt(rg.mean(axis=(1, 2)) ** 2 + yb.mean(axis=(1, 2)) ** 2))
    luma = (0.299 * r + 0.587 * g + 0.114 * b) / 255.0
    gy, gx = np.gradient(luma, axis=(1, 2))
    clutter = np.sqrt(gx ** 2 + gy ** 2).mean(axis=(1, 2))
    return np.clip(hasler / 150.0, 0, 1), luma.mean(axis=(1, 2)), np.clip(clutter / 0.5, 0, 1)


def measure_properties(judge, images: np.ndarray, own_prompts: Sequence[str],
                       other_prompts: Sequence[str | None]) -> ImageProperties:
    """The six properties of each image for its own prompt and the other (server's) prompt."""
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    probs = judge.probabilities(images)
    fidelity, fusion = np.zeros(n), np.zeros(n)
    for i, (own, other) in enumerate(zip(own_prompts, other_prompts)):
        row = {a: p[i:i + 1] for a, p in probs.items()}
        wanted = _stated(own)
        fidelity[i] = _mean_probability(row, wanted, 1)[0]
        if other:
            foreign = {a: v for a, v in _stated(other).items() if wanted.get(a) != v}
            fusion[i] = _mean_probability(row, foreign, 1)[0]
    colourfulness, brightness, clutter = colour_statistics(images)
    artefacts = 1.0 - probs["degradation"][:, 0]
    return ImageProperties(fidelity, fusion, colourfulness, brightness, clutter, artefacts)


# ---------------------------------------------------------------- the protocol and registry

@runtime_checkable
class Evaluator(Protocol):
    """Scores images for one user: ``qoe(properties, images, own, other, seeds) -> (n,)`` in [0, 1].

    ``seeds[i]`` seeds the stochastic part of image ``i`` (same seed, same score).
    """

    name: str
    personality: Personality

    def qoe(self, properties: ImageProperties, images: np.ndarray, own_prompts: Sequence[str],
            other_prompts: Sequence[str | None], seeds: Sequence[int]) -> np.ndarray: ...


@dataclass(frozen=True)
class TraitWeights:
    """How each trait moves the weight of each property (``docs/denoising.md`` gives the sources).

    ``weight[p] = base[p] + sum_t slope[p][t] * (u_t - 0.5)``; QoE mean =
    ``clip(offset + sum_p weight[p] * property[p], 0, 1)``.
    """

    base: dict = field(default_factory=lambda: {
        "fidelity": 0.55, "fusion": 0.0, "colourfulness": 0.10, "brightness": 0.05, "clutter": 0.0,
        "artefacts": -0.30})
    slope: dict = field(default_factory=lambda: {
        # conscientiousness: meticulous, goal-directed -> the prompt's attributes, no artefacts
        "fidelity": {"conscientiousness": 0.30, "agreeableness": 0.15},
        # agreeableness wants the own image untouched; openness likes fused novelty (Fayn et al. 2015)
        "fusion": {"openness": 0.50, "agreeableness": -0.50},
        # extraversion: most colourful pictures; openness and neuroticism: less colour (Liu et al. 2016)
        "colourfulness": {"extraversion": 0.30, "openness": -0.15, "neuroticism": -0.15},
        # agreeableness / extraversion: brighter, positive pictures (Liu et al. 2016)
        "brightness": {"agreeableness": 0.10, "extraversion": 0.10, "neuroticism": -0.10},
        # complexity: neuroticism -> simpler (Liu et al. 2016) vs the opposite (Lyssenko et al. 2016):
        # uncertain, so small slopes
        "clutter": {"neuroticism": -0.10, "openness": 0.10},
        "artefacts": {"conscientiousness": -0.20, "neuroticism": -0.10},
    })
    offset: float = 0.25

    def weights(self, personality: Personality) -> np.ndarray:
        """``(6,)`` property weights of a personality."""
        return np.array([self.base[p] + sum(s * (getattr(personality, t) - 0.5)
                                            for t, s in self.slope.get(p, {}).items()) for p in PROPERTIES])


@dataclass
class BigFiveEvaluator:
    """The built-in trait model (stands in for an LLM agent primed with the traits).

    ``Q = clip(mean + spread * z, 0, 1)``, ``z ~ N(0, 1)`` from ``seeds[i]``, with
    ``quality = fidelity (1 - artefacts)`` and ``spread = noise_floor + noise_slope (1 - quality)``
    (the paper's Fig. 10: stable feedback on a good image, scattered on a poor one).
    """

    personality: Personality
    name: str = "big-five"
    weights: TraitWeights = field(default_factory=TraitWeights)
    noise_floor: float = 0.02
    noise_slope: float = 0.12

    def mean_qoe(self, properties: ImageProperties) -> np.ndarray:
        return np.clip(self.weights.offset + properties.matrix() @ self.weights.weights(self.personality), 0, 1)

    def spread(self, properties: ImageProperties) -> np.ndarray:
        quality = properties.fidelity * (1.0 - properties.artefacts)
        return self.noise_floor + self.noise_slope * (1.0 - quality)

    def qoe(self, properties, images=None, own_prompts=(), other_prompts=(), seeds=()) -> np.ndarray:
        mean, spread = self.mean_qoe(properties), self.spread(properties)
        z = np.array([np.random.default_rng(np.random.SeedSequence([int(s), 25])).standard_normal() for s in seeds])
        return np.clip(mean + spread * z, 0.0, 1.0)


def request_text(personality: Personality, own_prompt: str) -> str:
    """The text sent to a user's LLM/VLM with the image (after the paper's section 4.1.2 prompt design)."""
    traits = ", ".join(f"{t.capitalize()}: {getattr(personality, t):.2f}" for t in TRAITS)
    return (f"You are a user with Big Five personality traits [{traits}] (0 = low, 1 = high). You asked for "
            f"\"{own_prompt}\". Rate the attached image from 0 to 1 by how much you like it. Reply with the number only.")


@dataclass
class LanguageModelEvaluator:
    """A user's own LLM/VLM as the evaluator: ``ask(text, image_uint8_hwc, seed) -> score`` in [0, 1].

    The score is clipped to [0, 1]; a reply that is not a number is a :class:`UserError`.
    """

    personality: Personality
    ask: Callable[[str, np.ndarray, int], object]
    name: str = "language-model"

    def qoe(self, properties, images, own_prompts, other_prompts, seeds) -> np.ndarray:
        out = np.zeros(len(images))
        for i, (image, own, seed) in enumerate(zip(images, own_prompts, seeds)):
            hwc = np.round((np.clip(np.transpose(image, (1, 2, 0)), -1, 1) + 1) * 127.5).astype(np.uint8)
            reply = self.ask(request_text(self.personality, own), hwc, int(seed))
            try:
                out[i] = float(str(reply).strip())
            except ValueError:
                raise UserError(f"evaluator {self.name!r}: reply {str(reply)[:40]!r} is not a number") from None
        return np.clip(out, 0.0, 1.0)


class ScriptedLanguageModel:
    """Test double of a VLM: reads the traits back from the request text and scores brightness.

    Deterministic: ``openness x mean brightness + small seeded jitter``; enough to check that the
    request carries the traits and the image, and that the plumbing returns the model's number.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, text: str, image: np.ndarray, seed: int) -> str:
        import re

        self.requests.append(text)
        openness = float(re.search(r"Openness: ([0-9.]+)", text).group(1))
        jitter = np.random.default_rng(seed).uniform(-0.01, 0.01)
        return f"{openness * image.mean() / 255.0 + jitter:.6f}"


EVALUATORS: dict[str, Callable[..., Evaluator]] = {}


def register_evaluator(name: str, factory: Callable[..., Evaluator]) -> None:
    """Add an evaluator family: ``factory(personality, **options) -> Evaluator``."""
    EVALUATORS[name] = factory


def make_evaluator(name: str, personality: Personality, **options) -> Evaluator:
    """An evaluator by registry name; a UserError naming the choices otherwise."""
    if name not in EVALUATORS:
        raise UserError(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
    return EVALUATORS[name](personality, **options)


register_evaluator("big-five", lambda personality, **o: BigFiveEvaluator(personality, **o))
register_evaluator("language-model", lambda personality, ask, **o: LanguageModelEvaluator(personality, ask, **o))


def personality_from_mapping(data: dict, where: str) -> Personality:
    """A Personality from a TOML/JSON table; a UserError naming ``where`` and the field otherwise."""
    values = {}
    for name in TRAITS:
        if name not in data:
            raise UserError(f"{where}: missing field {name!r}")
        value = data[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise UserError(f"{where}.{name}: {value!r} is not a number in [0, 1]")
        values[name] = float(value)
    return Personality(**values)


def personality_dict(p: Personality) -> dict[str, float]:
    return asdict(p)


__all__ = ["TRAITS", "PROPERTIES", "Personality", "GA1", "GA2", "PRESETS", "ImageProperties",
           "measure_properties", "colour_statistics", "Evaluator", "TraitWeights", "BigFiveEvaluator",
           "LanguageModelEvaluator", "ScriptedLanguageModel", "request_text", "EVALUATORS",
           "register_evaluator", "make_evaluator", "personality_from_mapping", "personality_dict"]
