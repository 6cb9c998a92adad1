"""Requests, the power -> bit-error link, and the user-side score (sections IV-B.1, III-C).

What this module is for: a :class:`Request` is what a user sends (the raw prompt), what they
had in mind (the hidden intent: a fuller description the MASP never sees) and the quality
they need (threshold on the 0-10 score). The image reaches them over the wireless link at
transmit power P: :func:`ber_at_power` is the expected BER of eq. (10)
(``provisioning.channel``: Nakagami-m fading, path loss, log-normal shadowing) and the image
crosses a binary symmetric channel at that BER (``provisioning.backend.channel``).

The user-side score Gamma(p*, Omega(p*), P) of eq. (13) comes from a :class:`Scorer`; both
built-in scorers read the image through the one measurement of the personality-conditioned
evaluators (``provisioning.denoising.evaluators.measure_properties``: one judge forward pass,
the intent as the user's own prompt, no other prompt):

* :class:`EvaluatorScorer` -- the paper's assessing agent: a personality-conditioned
  evaluator (``BigFiveEvaluator`` of the registry, or a user's own LLM/VLM through
  ``LanguageModelEvaluator``) scores each received image; ``score = 10 * QoE``;
* :class:`JudgeScorer` -- intent match and degradation from the scene judge (a CNN trained
  on renders)::

      score = 10 * intent_match * (1 - degradation_weight * degradation)

  ``intent_match`` is the measurement's ``fidelity`` (the mean judge probability of each
  attribute the intent states, degradation excluded), ``degradation`` its ``artefacts``
  (``1 - P(clean)``).

Scorers take *received* images; any object with ``score(images, requests, seeds) -> (n,)
array in [0, 10]`` plugs in (``seeds[i]`` seeds a stochastic scorer's draw for image i; same
seed, same score). :func:`make_scorer` builds one from a spec string (``judge``,
``big-five:GA1``, ``big-five:0.1,0.8,0.7,0.8,0.1``), the form a dataset records.

:func:`sample_requests` draws users who share the world optimizer's common sense
(:data:`.corpus.TYPICAL`): an intent's colour / lighting is the typical one with probability
``typical_rate``; the raw prompt is the intent's ``"A [scene], with [object]"``.

May import: numpy, ``provisioning.channel``, ``provisioning.backend`` (channel, scenes' world
and judge), ``provisioning.denoising.evaluators``, ``.corpus``, ``market.errors``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from market.errors import UserError
from provisioning.backend.channel import transmit_images
from provisioning.backend.scenes.world import caption, parse, raw_prompt, sample_description
from provisioning.channel import ChannelParams, expected_ber, mean_snr_per_watt

from .corpus import TYPICAL


@dataclass(frozen=True)
class Request:
    """One user request: the raw prompt, the hidden intent and the quality threshold (0-10)."""

    raw: str
    intent: str
    threshold: float = 7.5

    def intent_attributes(self) -> dict[str, str]:
        """The intent's checkable attributes (degradation excluded)."""
        return {k: v for k, v in parse(self.intent).description.specified().items() if k != "degradation"}


@dataclass(frozen=True)
class LinkConfig:
    """The user's link: distance and channel (defaults: 200 m, the provisioning layer's channel).

    At 200 m the default channel gives BER ~0.11 at 1 mW, ~0.01 at 10 mW, ~2e-4 at 100 mW.
    """

    distance_m: float = 200.0
    channel: ChannelParams = ChannelParams()


def ber_at_power(power_w, link: LinkConfig = LinkConfig()):
    """Expected BER (eq. (10)) of the image link at transmit power ``power_w`` (watts)."""
    power = np.asarray(power_w, dtype=float)
    if np.any(power <= 0) or not np.all(np.isfinite(power)):
        raise UserError(f"power: {power_w!r} must be positive watts")
    return expected_ber(mean_snr_per_watt(link.distance_m, link.channel) * power, link.channel)


def receive(images: np.ndarray, ber: float, rng: np.random.Generator) -> np.ndarray:
    """Images in [-1, 1] as the user receives them (8-bit pixels, bit flips at ``ber``)."""
    return transmit_images(np.asarray(images, dtype=np.float32), float(ber), rng=rng).values


@runtime_checkable
class Scorer(Protocol):
    """User-side assessment: received images ``(n, 3, 32, 32)`` in [-1, 1] -> scores in [0, 10].

    ``seeds`` (one int per image, optional) seeds a stochastic scorer's draw; without it the
    draw is seeded by the image's bytes (same image, same score).
    """

    name: str

    def score(self, images: np.ndarray, requests: Sequence[Request], seeds: Sequence[int] | None = None) -> np.ndarray:
        ...


def _default_judge():
    from provisioning.backend.scenes.judge import load_judge

    return load_judge("cpu")


def measure_received(judge, images: np.ndarray, requests: Sequence[Request]):
    """The evaluators' :class:`ImageProperties` of received images, each against its request's intent."""
    from provisioning.denoising.evaluators import measure_properties

    if len(images) != len(requests):
        raise ValueError(f"{len(images)} images for {len(requests)} requests")
    return measure_properties(judge, images, [r.intent for r in requests], [None] * len(requests))


def image_seeds(images: np.ndarray) -> list[int]:
    """A seed per image from its bytes (CRC-32 of the float32 pixels)."""
    import zlib

    return [zlib.crc32(np.ascontiguousarray(x, dtype=np.float32).tobytes()) for x in np.asarray(images)]


class JudgeScorer:
    """The judge-based score of the module docstring (deterministic: ``seeds`` are ignored)."""

    name = "judge"

    def __init__(self, judge=None, degradation_weight: float = 0.5):
        self.judge = judge if judge is not None else _default_judge()
        self.degradation_weight = float(degradation_weight)

    def score(self, images: np.ndarray, requests: Sequence[Request], seeds: Sequence[int] | None = None) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0)
        props = measure_received(self.judge, images, requests)
        return np.clip(10.0 * props.fidelity * (1.0 - self.degradation_weight * props.artefacts), 0.0, 10.0)


class EvaluatorScorer:
    """A personality-conditioned evaluator (``provisioning.denoising.evaluators``) as the user-side score.

    ``score = 10 * evaluator.qoe(properties, images, intents, no other prompt, seeds)``; its
    ``name`` (``<evaluator>:<personality>``) is what a dataset records.
    """

    def __init__(self, evaluator, judge=None, label: str | None = None):
        from provisioning.denoising.evaluators import Evaluator

        if not isinstance(evaluator, Evaluator):
            raise UserError(f"scorer: {evaluator!r} does not follow the evaluators' Evaluator protocol")
        self.evaluator = evaluator
        self.judge = judge if judge is not None else _default_judge()
        traits = ",".join(f"{v:g}" for v in evaluator.personality.vector())
        self.name = f"{evaluator.name}:{label or traits}"

    def score(self, images: np.ndarray, requests: Sequence[Request], seeds: Sequence[int] | None = None) -> np.ndarray:
        if len(images) == 0:
            return np.zeros(0)
        images = np.asarray(images, dtype=np.float32)
        props = measure_received(self.judge, images, requests)
        seeds = image_seeds(images) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(images):
            raise ValueError(f"{len(seeds)} seeds for {len(images)} images")
        intents = [r.intent for r in requests]
        return np.clip(10.0 * self.evaluator.qoe(props, images, intents, [None] * len(images), seeds), 0.0, 10.0)


SCORER_CHOICES = "judge, big-five:GA1, big-five:GA2 or big-five:O,C,E,A,N (five numbers in [0, 1])"


def make_scorer(spec: str, judge=None) -> Scorer:
    """A scorer from its spec (:data:`SCORER_CHOICES`); the evaluator part goes through the evaluators'
    registry (``make_evaluator``), so a registered family ``name:PERSONALITY`` works too."""
    from provisioning.denoising.evaluators import PRESETS, TRAITS, Personality, make_evaluator

    spec = str(spec).strip()
    if spec == "judge":
        return JudgeScorer(judge)
    family, _, who = spec.partition(":")
    if not who:
        raise UserError(f"scorer {spec!r}: choose {SCORER_CHOICES}")
    if who in PRESETS:
        personality = PRESETS[who]
    else:
        try:
            values = [float(x) for x in who.split(",")]
            personality = Personality(**dict(zip(TRAITS, values, strict=True)))
        except (ValueError, TypeError):
            raise UserError(f"scorer {spec!r}: the personality must be GA1, GA2 or five numbers in [0, 1] "
                            f"({', '.join(TRAITS)})") from None
    evaluator = make_evaluator(family, personality)
    return EvaluatorScorer(evaluator, judge, label=who if who in PRESETS else None)


def sample_requests(count: int, seed: int, typical_rate: float = 0.7, threshold: float = 7.5,
                    exclude: frozenset[str] = frozenset()) -> list[Request]:
    """``count`` distinct requests (distinct intents) whose raw prompts are not in ``exclude``.

    Intents state scene, object, colour, lighting and, half the time, count and size; never a
    degradation (users want clean images). Raises when the world cannot supply that many.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 10]))
    out: list[Request] = []
    seen: set[str] = set()
    for _ in range(200 * max(1, count)):
        if len(out) == count:
            break
        d = sample_description(rng)
        if rng.random() < typical_rate:
            d = replace(d, colour=TYPICAL["colour"][d.object])
        if rng.random() < typical_rate:
            d = replace(d, lighting=TYPICAL["lighting"][d.scene])
        keep = rng.random() < 0.5
        d = replace(d, degradation=None, position=None, count=d.count if keep else None, size=d.size if keep else None)
        raw = raw_prompt(d)
        intent = caption(d)
        if raw in exclude or intent in seen:
            continue
        seen.add(intent)
        out.append(Request(raw, intent, threshold))
    if len(out) < count:
        raise UserError(f"requests: the world has fewer than {count} distinct intents outside the excluded prompts")
    return out


def heldout_split(requests: Sequence[Request], heldout: Sequence[Request]) -> list[Request]:
    """The held-out requests whose raw prompt is not among ``requests``' (evaluation on unseen prompts)."""
    seen = {r.raw for r in requests}
    return [r for r in heldout if r.raw not in seen]


__all__ = ["Request", "LinkConfig", "ber_at_power", "receive", "Scorer", "JudgeScorer", "EvaluatorScorer",
           "SCORER_CHOICES", "make_scorer", "measure_received", "image_seeds", "sample_requests", "heldout_split"]
