"""Prompt-engineering strategies (Table II) and their registry.

What this module is for: a strategy names the corpus aspects appended to the raw prompt
(suffix style, section IV-A). Table II's seven: 0 raw; 1 object description; 2-6 object
description plus environment / mood / lighting / quality booster / negative effects, the
negative effects going into the *negative prompt* (the other branch of classifier-free
guidance) rather than the prompt. Eq. (11) allows every permutation of every subset of the
corpus; the paper's empirical filter S(.) of eq. (15) keeps these seven, and so do we: each
strategy uses the top-ranked phrasing of each of its aspects.

Composition keeps the world's caption grammar, which is what the scene generator was trained
on: the stated attributes of the raw prompt and of the chosen phrasings are merged (a later
aspect overrides an earlier one) and captioned with ``world.caption``; words the world cannot
check (moods, free boosters) follow after a comma. Users register their own strategies with
:func:`register_strategy`.

May import: ``provisioning.backend.scenes.world``, ``.corpus``, ``market.errors``.
"""
from __future__ import annotations

from dataclasses import dataclass

from market.errors import UserError
from provisioning.backend.scenes.world import SceneDescription, caption, parse

from .corpus import ASPECTS, PromptCorpus


@dataclass(frozen=True)
class Strategy:
    """Which aspects a strategy appends (``negative`` goes to the negative prompt)."""

    name: str
    aspects: tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        bad = [a for a in self.aspects if a not in ASPECTS]
        if bad:
            raise UserError(f"strategy {self.name!r}: aspects {bad} are not among {', '.join(ASPECTS)}")


@dataclass(frozen=True)
class EngineeredPrompt:
    """What the generator receives."""

    prompt: str
    negative_prompt: str


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy, *, replace: bool = False) -> Strategy:
    """Add a strategy; its index is its position in :func:`strategies`. Re-registering needs ``replace``."""
    if strategy.name in _REGISTRY and not replace:
        raise UserError(f"strategy {strategy.name!r} is already registered")
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategies() -> tuple[Strategy, ...]:
    """All registered strategies, in registration order (Table II's first)."""
    return tuple(_REGISTRY.values())


def get_strategy(name_or_index: str | int) -> Strategy:
    """A strategy by name or by index in :func:`strategies`."""
    table = strategies()
    if isinstance(name_or_index, int):
        if not 0 <= name_or_index < len(table):
            raise UserError(f"strategy: index {name_or_index} is not in 0..{len(table) - 1}")
        return table[name_or_index]
    if name_or_index not in _REGISTRY:
        raise UserError(f"strategy: {name_or_index!r} is not one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name_or_index]


for _name, _aspects, _text in (
        ("raw", (), "Strategy 0: raw prompt"),
        ("object", ("object",), "Strategy 1: object description"),
        ("object+environment", ("object", "environment"), "Strategy 2: object description + environment"),
        ("object+mood", ("object", "mood"), "Strategy 3: object description + mood"),
        ("object+lighting", ("object", "lighting"), "Strategy 4: object description + lighting"),
        ("object+booster", ("object", "booster"), "Strategy 5: object description + quality booster"),
        ("object+negative", ("object", "negative"), "Strategy 6: object description + negative effects"),
):
    register_strategy(Strategy(_name, _aspects, _text))

#: Table II's strategies (indices 0-6 of :func:`strategies`).
TABLE_II: tuple[str, ...] = tuple(_REGISTRY)
#: The paper's "empirical" policy always picks strategy 6.
EMPIRICAL_STRATEGY = 6


def apply_strategy(corpus: PromptCorpus, strategy: Strategy) -> EngineeredPrompt:
    """The engineered prompt and negative prompt of ``strategy`` on ``corpus.raw``."""
    stated = parse(corpus.raw).description.specified()
    extra: list[str] = []
    negative: list[str] = []
    for aspect in strategy.aspects:
        item = corpus.top(aspect)
        if item is None:
            continue
        if aspect == "negative":
            negative.append(item.text)
            continue
        stated.update({k: v for k, v in item.attributes.items() if k != "degradation" or aspect == "booster"})
        extra.extend(w for w in item.extra_words if w not in extra)
    if "scene" not in stated or "object" not in stated:
        raise UserError(f"raw prompt: {corpus.raw!r} names no scene and object of the world")
    text = caption(SceneDescription(**stated))
    if extra:
        text += ", " + " ".join(extra)
    return EngineeredPrompt(text, ", ".join(negative))
