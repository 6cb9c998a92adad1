"""Requests, the power -> bit-error link, and the user-side score (sections IV-B.1, III-C).

What this module is for: a :class:`Request` is what a user sends (the raw prompt), what they
had in mind (the hidden intent: a fuller description the MASP never sees) and the quality
they need (threshold on the 0-10 score). The image reaches them over the wireless link at
transmit power P: :func:`ber_at_power` is the expected BER of eq. (10)
(``provisioning.channel``: Nakagami-m fading, path loss, log-normal shadowing) and the image
crosses a binary symmetric channel at that BER (``provisioning.backend.channel``).

The user-side score Gamma(p*, Omega(p*), P) of eq. (13) comes from a :class:`Scorer`. The
paper's is an LLM assessing agent; until the personality-conditioned evaluators of the RLLI
issue exist, :class:`JudgeScorer` scores with the scene judge (a CNN trained on renders):

    score = 10 * intent_match * (1 - degradation_weight * degradation)

``intent_match`` is the mean judge probability of each checkable intent attribute (the
degradation attribute excluded: it is what ``degradation`` measures), ``degradation`` the
judge's ``1 - P(clean)``. Scorers take *received* images; any object with
``score(images, requests) -> (n,) array in [0, 10]`` plugs in.

:func:`sample_requests` draws users who share the world optimizer's common sense
(:data:`.corpus.TYPICAL`): an intent's colour / lighting is the typical one with probability
``typical_rate``; the raw prompt is the intent's ``"A [scene], with [object]"``.

May import: numpy, ``provisioning.channel``, ``provisioning.backend`` (channel, scenes' world
and judge), ``.corpus``, ``market.errors``; torch inside :class:`JudgeScorer`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from market.errors import UserError
from provisioning.backend.channel import transmit_images
from provisioning.backend.scenes.world import (ATTRIBUTES, VOCABULARY,
                                               caption, parse, raw_prompt, sample_description)
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
    """User-side assessment: received images ``(n, 3, 32, 32)`` in [-1, 1] -> scores in [0, 10]."""

    name: str

    def score(self, images: np.ndarray, requests: Sequence[Request]) -> np.ndarray:
        ...


class JudgeScorer:
    """The judge-based score of the module docstring."""

    name = "judge"

    def __init__(self, judge=None, degradation_weight: float = 0.5):
        if judge is None:
            from provisioning.backend.scenes.judge import load_judge

            judge = load_judge("cpu")
        self.judge = judge
        self.degradation_weight = float(degradation_weight)

    def probabilities(self, images: np.ndarray) -> list[np.ndarray]:
        """Per attribute, the judge's class probabilities ``(n, values)``."""
        import torch

        x = torch.as_tensor(np.asarray(images, dtype=np.float32)).to(self.judge.device)
        with torch.inference_mode():
            return [torch.softmax(o.float(), 1).cpu().numpy() for o in self.judge.net(x)]

    def score(self, images: np.ndarray, requests: Sequence[Request]) -> np.ndarray:
        if len(images) != len(requests):
            raise ValueError(f"{len(images)} images for {len(requests)} requests")
        if len(images) == 0:
            return np.zeros(0)
        probs = self.probabilities(images)
        match = np.ones(len(images))
        for i, request in enumerate(requests):
            wanted = request.intent_attributes()
            if wanted:
                match[i] = np.mean([probs[ATTRIBUTES.index(a)][i, VOCABULARY[a].index(v)] for a, v in wanted.items()])
        degradation = 1.0 - probs[ATTRIBUTES.index("degradation")][:, 0]
        return np.clip(10.0 * match * (1.0 - self.degradation_weight * degradation), 0.0, 10.0)


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


__all__ = ["Request", "LinkConfig", "ber_at_power", "receive", "Scorer", "JudgeScorer", "sample_requests",
           "heldout_split"]
