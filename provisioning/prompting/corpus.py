"""The prompt corpus c_p of a raw prompt along six aspects (section IV-A, eq. (11)).

What this module is for: given a raw prompt ``"A [a], with [b]"``, a prompt optimizer returns
an L_c-item corpus: for each of the paper's six aspects (object description, environment,
mood, lighting, quality booster, negative effects) several candidate phrasings, ranked, some
helpful, some misleading or irrelevant -- as an LLM's corpus would be. Strategies
(:mod:`.strategies`) then append the top-ranked phrasing of chosen aspects to the raw prompt
(the paper's suffix style).

Three optimizers share the :class:`PromptOptimizer` protocol (``corpus(raw, seed)``):

* :class:`WorldPromptOptimizer` -- built in, seeded, over the scene world's knowledge
  (``provisioning.backend.scenes.world``): object descriptions name a colour / count / size,
  environments restate or contradict the scene, lighting names day / dusk / night, boosters are
  ``clean, sharp`` plus words the world cannot check, negative effects are the world's
  degradations plus general terms, moods are words the world cannot check (irrelevant to the
  judge; they still reach the text encoder). Its "common sense" is :data:`TYPICAL`: a
  typical colour per object and a typical lighting per scene. A helpful phrasing states the
  typical value; a misleading one another value. How often the top-ranked phrasing is the
  helpful one is ``helpful_rate`` (default 0.6). Users (:mod:`.requests`) share this common
  sense (their intents favour typical values), so the corpus helps more often than it hurts,
  but not always -- as Fig. 10 of the paper shows for real LLM corpora.
* :class:`CallablePromptOptimizer` -- any callable ``str -> str`` the user has (a local LLM, a
  template, a web service they wire in themselves): it receives :func:`instructions` and must
  answer one ``aspect: phrasing`` line per item. Nothing here reaches the network.
* a test double is simply a ``CallablePromptOptimizer`` around a function (see the tests).

The instruction text mirrors the paper authors' public instructions for their LLM optimizer:
a role (a writer who enriches content), slots for concept, subject, environment, mood and
lighting, 5-10 quality-booster terms and about 20 negative terms, general and topic-specific.
Hand-written because no library produces corpora for this toy world.

May import: numpy, ``provisioning.backend.scenes.world`` (numpy only), ``market.errors``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from market.errors import UserError
from provisioning.backend.scenes.world import (COLOURS, COUNTS, LIGHTINGS, OBJECTS, SCENES, SIZES,
                                               parse)

#: The paper's six aspects (section VI-B), in Table II order.
ASPECTS: tuple[str, ...] = ("object", "environment", "mood", "lighting", "booster", "negative")

#: World common sense the built-in optimizer (and the simulated users) share.
TYPICAL: dict[str, dict[str, str]] = {
    "colour": {"ball": "red", "box": "orange", "tree": "green", "house": "white", "star": "yellow", "car": "blue"},
    "lighting": {"grassland": "day", "ocean": "day", "desert": "dusk", "city": "night", "snowfield": "day",
                 "forest": "dusk"},
}

_MOODS = ("joyful", "calm", "melancholic", "dreamy", "tense", "serene", "playful", "lonely")
_BOOSTERS_CHECKABLE = ("clean", "sharp")
_BOOSTERS_FREE = ("high quality", "detailed", "high resolution", "masterpiece", "crisp focus",
                  "professional photo", "vivid colours", "fine texture", "award winning", "realistic")
_NEGATIVE_WORLD = ("blurry", "noisy", "cluttered")
_NEGATIVE_GENERAL = ("low quality", "pixelation", "distortion", "bad perspective", "amateurish rendering",
                     "incorrect lighting", "unrealistic colours", "inconsistent tones", "lack of depth",
                     "no details", "absence of shadows", "simplistic design", "jpeg artifacts", "watermark",
                     "oversaturated", "underexposed", "overexposed", "cropped", "low contrast", "duplicate objects")
_LIGHTING_PHRASE = {"day": "in daylight", "dusk": "at dusk", "night": "at night"}


@dataclass(frozen=True)
class CorpusItem:
    """One phrasing of one aspect.

    ``text`` is what is appended (or, for ``negative``, what goes into the negative prompt);
    ``attributes`` are the world attributes the text states (read with the world's parser);
    ``extra_words`` the words the world cannot check (kept in the prompt, ignored by the judge).
    """

    aspect: str
    text: str
    attributes: dict[str, str] = field(default_factory=dict)
    extra_words: tuple[str, ...] = ()

    @classmethod
    def from_text(cls, aspect: str, text: str) -> "CorpusItem":
        """An item whose attributes and extra words are read from ``text`` by the world's parser."""
        if aspect not in ASPECTS:
            raise UserError(f"aspect: {aspect!r} is not one of {', '.join(ASPECTS)}")
        parsed = parse(text)
        return cls(aspect, text.strip(), parsed.description.specified(), tuple(parsed.unknown_words))


@dataclass(frozen=True)
class PromptCorpus:
    """The corpus c_p of one raw prompt: ranked phrasings per aspect (best-ranked first)."""

    raw: str
    items: dict[str, tuple[CorpusItem, ...]]

    def __len__(self) -> int:
        """L_c, the number of items."""
        return sum(len(v) for v in self.items.values())

    def top(self, aspect: str) -> CorpusItem | None:
        """The top-ranked phrasing of ``aspect`` (``None`` when the corpus has none)."""
        found = self.items.get(aspect, ())
        return found[0] if found else None

    def to_dict(self) -> dict:
        return {"raw": self.raw, "items": {a: [it.text for it in v] for a, v in self.items.items()}}


@runtime_checkable
class PromptOptimizer(Protocol):
    """Anything that turns a raw prompt into a corpus (``ell_c`` of the paper)."""

    name: str

    def corpus(self, raw: str, seed: int = 0) -> PromptCorpus:
        ...


def instructions(raw: str, booster_terms: int = 8, negative_terms: int = 20) -> str:
    """The instruction text for an LLM optimizer, in the structure of the paper authors' prompt.

    Role, the five content slots, the number of booster and negative terms, and the answer
    format this module parses (one ``aspect: phrasing`` line per item).
    """
    if not 5 <= booster_terms <= 10:
        raise UserError("booster_terms: the instruction asks for 5-10 quality boosters")
    return "\n".join([
        "You are a writer who enriches the content of image prompts for a text-to-image model.",
        f"Raw prompt: {raw}",
        "Concept: the idea the image conveys. Subject: the object named after 'with'.",
        "Environment: the background that surrounds the subject.",
        "Mood: the emotion the image conveys. Lighting: the light sources and their effect.",
        f"Give {booster_terms} quality-booster terms (e.g. high quality, sharp, detailed).",
        f"Give about {negative_terms} negative terms, general and specific to this topic, that"
        " describe effects to avoid (e.g. blurry, noisy, distortion).",
        f"Answer one line per phrasing, 'aspect: phrasing', aspect one of {', '.join(ASPECTS)}.",
    ])


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _rng(raw: str, seed: int) -> np.random.Generator:
    """A generator seeded by the seed and the prompt's characters (stable across runs)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), *raw.lower().encode("utf-8")]))


def _ranked(helpful: CorpusItem, others: list[CorpusItem], rng: np.random.Generator, helpful_rate: float
            ) -> tuple[CorpusItem, ...]:
    """``helpful`` first with probability ``helpful_rate``, else a random other first."""
    order = [others[int(i)] for i in rng.permutation(len(others))]
    if rng.random() < helpful_rate or not order:
        return (helpful, *order)
    return (order[0], helpful, *order[1:])


@dataclass
class WorldPromptOptimizer:
    """The built-in, seeded optimizer over the scene world's knowledge (see the module docstring).

    ``phrasings`` candidates per aspect (>= 2); ``helpful_rate`` the chance that an aspect's
    top-ranked phrasing is the helpful one.
    """

    phrasings: int = 3
    helpful_rate: float = 0.6
    booster_terms: int = 8
    negative_terms: int = 20
    name: str = "world"

    def corpus(self, raw: str, seed: int = 0) -> PromptCorpus:
        parsed = parse(raw).description
        if parsed.scene is None or parsed.object is None:
            raise UserError(f"raw prompt: {raw!r} names no scene and object of the world "
                            f"(scenes: {', '.join(SCENES)}; objects: {', '.join(OBJECTS)})")
        rng = _rng(raw, seed)
        k = max(2, int(self.phrasings))
        scene, obj = parsed.scene, parsed.object
        items: dict[str, tuple[CorpusItem, ...]] = {}

        colour = TYPICAL["colour"][obj]
        helpful = self._object_item(colour, rng, obj)
        wrong = [c for c in COLOURS if c != colour]
        others = [self._object_item(wrong[int(i)], rng, obj) for i in rng.choice(len(wrong), k - 1, replace=False)]
        items["object"] = _ranked(helpful, others, rng, self.helpful_rate)

        helpful = CorpusItem.from_text("environment", f"a wide open {scene} all around")
        wrong_scenes = [s for s in SCENES if s != scene]
        others = [CorpusItem.from_text("environment", f"the edge of {_a(wrong_scenes[int(i)])} {wrong_scenes[int(i)]} behind")
                  for i in rng.choice(len(wrong_scenes), k - 1, replace=False)]
        items["environment"] = _ranked(helpful, others, rng, self.helpful_rate)

        moods = [_MOODS[int(i)] for i in rng.choice(len(_MOODS), k, replace=False)]
        items["mood"] = tuple(CorpusItem.from_text("mood", f"{m} atmosphere") for m in moods)

        light = TYPICAL["lighting"][scene]
        helpful = CorpusItem.from_text("lighting", _LIGHTING_PHRASE[light])
        others = [CorpusItem.from_text("lighting", _LIGHTING_PHRASE[x]) for x in LIGHTINGS if x != light][: k - 1]
        items["lighting"] = _ranked(helpful, others, rng, self.helpful_rate)

        boosters = []
        for _ in range(k):
            n_free = int(np.clip(self.booster_terms, 5, 10)) - 1
            free = [_BOOSTERS_FREE[int(i)] for i in rng.choice(len(_BOOSTERS_FREE), n_free, replace=False)]
            words = [str(rng.choice(_BOOSTERS_CHECKABLE)), *free] if rng.random() < self.helpful_rate else free
            boosters.append(CorpusItem.from_text("booster", ", ".join(words)))
        items["booster"] = tuple(boosters)

        negatives = []
        for _ in range(k):
            world = list(_NEGATIVE_WORLD) if rng.random() < self.helpful_rate else []
            n_general = min(max(0, int(self.negative_terms) - len(world)), len(_NEGATIVE_GENERAL))
            general = [_NEGATIVE_GENERAL[int(i)] for i in rng.choice(len(_NEGATIVE_GENERAL), n_general, replace=False)]
            negatives.append(CorpusItem.from_text("negative", ", ".join(world + general)))
        items["negative"] = tuple(negatives)
        return PromptCorpus(raw, items)

    @staticmethod
    def _object_item(colour: str, rng: np.random.Generator, obj: str) -> CorpusItem:
        words = [colour]
        if rng.random() < 0.5:
            words.insert(0, str(rng.choice(SIZES)))
        if rng.random() < 0.3:
            count = str(rng.choice(COUNTS))
            noun = obj if count == "one" else (obj + "es" if obj == "box" else obj + "s")
            return CorpusItem.from_text("object", f"{count} {' '.join(words)} {noun}")
        return CorpusItem.from_text("object", f"{_a(words[0])} {' '.join(words)} {obj}")


_LINE = re.compile(r"^\s*([A-Za-z ]+?)\s*:\s*(.+?)\s*$")
_ASPECT_ALIASES = {"object description": "object", "quality booster": "booster", "negative effects": "negative",
                   "negatives": "negative", "boosters": "booster", "background": "environment"}


@dataclass
class CallablePromptOptimizer:
    """Any callable ``instructions -> answer`` (a local LLM, a template) as a :class:`PromptOptimizer`.

    The answer is read one ``aspect: phrasing`` line at a time (order = rank); lines that do not
    name an aspect are ignored. An answer with no usable line is a :class:`UserError`.
    """

    complete: Callable[[str], str]
    name: str = "callable"

    def corpus(self, raw: str, seed: int = 0) -> PromptCorpus:
        answer = self.complete(instructions(raw))
        found: dict[str, list[CorpusItem]] = {}
        for line in str(answer).splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            aspect = _ASPECT_ALIASES.get(m.group(1).strip().lower(), m.group(1).strip().lower())
            if aspect in ASPECTS:
                found.setdefault(aspect, []).append(CorpusItem.from_text(aspect, m.group(2)))
        if not found:
            raise UserError(f"prompt optimizer {self.name!r}: its answer for {raw!r} has no 'aspect: phrasing' line")
        return PromptCorpus(raw, {a: tuple(v) for a, v in found.items()})
