"""The scene world: vocabulary, structured descriptions, and the caption grammar both ways.

What this module is for: one definition of what a scene image can show (scene, object,
colour, count, size, position, lighting, degradation), the prior it is drawn from, the
caption grammar in the seeds' form ``"A [scene], with [objects]"`` plus attribute phrases
(the raw prompt of Liu et al., "Intelligent Mobile AI-Generated Content Services via
Interactive Prompt Engineering and Dynamic Service Provisioning", section IV: a raw prompt
names the scene and the object; an engineered one adds attributes), and a parser from any
text back to the attributes it states.

Grammar (every part except the scene and the object is optional)::

    A[n] <scene> [in daylight | at dusk | at night], with <count> [<size>] [<colour>] <object>[s]
        [on the left | in the centre | on the right] [, blurry | , noisy | , cluttered | , clean]

``<count>`` is ``one | two | three``; an unstated count is written with the article
``a``/``an`` and the singular noun (``"with a red ball"``): the article leaves the count to
the prior, ``"one"`` pins it. Captions in training drop attributes at random
(:func:`drop_attributes`), so a raw prompt leaves them to chance.

The parser is keyword-based on purpose (the grammar is finite and every attribute has its
own words): it accepts free text, reads the words it knows (plurals, ``center``, ``day`` and
``daylight``, ``blur``/``blurry``...) and returns the words it does not know, which the
measurement reports as unchecked. No library parses this toy grammar, hence hand-written.

May import: numpy (nothing else: the renderer and the models build on this).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

SCENES: tuple[str, ...] = ("grassland", "ocean", "desert", "city", "snowfield", "forest")
OBJECTS: tuple[str, ...] = ("ball", "box", "tree", "house", "star", "car")
COLOURS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
COUNTS: tuple[str, ...] = ("one", "two", "three")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("left", "centre", "right")
LIGHTINGS: tuple[str, ...] = ("day", "dusk", "night")
DEGRADATIONS: tuple[str, ...] = ("none", "blur", "noise", "clutter")

#: Attribute name -> its values, in the order of :class:`SceneDescription`'s fields.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "scene": SCENES, "object": OBJECTS, "colour": COLOURS, "count": COUNTS, "size": SIZES,
    "position": POSITIONS, "lighting": LIGHTINGS, "degradation": DEGRADATIONS,
}
ATTRIBUTES: tuple[str, ...] = tuple(VOCABULARY)
#: Attributes a raw prompt always names (the seeds' "A [scene], with [object]").
RAW_ATTRIBUTES: tuple[str, ...] = ("scene", "object")
#: Prior probability of each degradation (the others are uniform).
DEGRADATION_PRIOR: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)

_PLURALS = {"ball": "balls", "box": "boxes", "tree": "trees", "house": "houses", "star": "stars", "car": "cars"}
_LIGHTING_PHRASE = {"day": "in daylight", "dusk": "at dusk", "night": "at night"}
_POSITION_PHRASE = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
_DEGRADATION_WORD = {"none": "clean", "blur": "blurry", "noise": "noisy", "clutter": "cluttered"}

#: Every word the parser maps to an attribute value.
_KEYWORDS: dict[str, tuple[str, str]] = {}
for _attr, _values in VOCABULARY.items():
    for _value in _values:
        if _attr not in ("degradation", "lighting"):
            _KEYWORDS[_value] = (_attr, _value)
for _obj, _plural in _PLURALS.items():
    _KEYWORDS[_plural] = ("object", _obj)
_KEYWORDS.update({
    "center": ("position", "centre"), "middle": ("position", "centre"),
    "day": ("lighting", "day"), "daylight": ("lighting", "day"), "daytime": ("lighting", "day"),
    "dusk": ("lighting", "dusk"), "sunset": ("lighting", "dusk"), "night": ("lighting", "night"),
    "blurry": ("degradation", "blur"), "blur": ("degradation", "blur"), "blurred": ("degradation", "blur"),
    "noisy": ("degradation", "noise"), "noise": ("degradation", "noise"),
    "cluttered": ("degradation", "clutter"), "clutter": ("degradation", "clutter"),
    "clean": ("degradation", "none"), "sharp": ("degradation", "none"),
    "big": ("size", "large"), "tiny": ("size", "small"),
})
#: Words of the grammar that carry no attribute (never reported as unknown).
FILLER_WORDS: frozenset[str] = frozenset(
    "a an the with in on at of and some image picture photo".split())


@dataclass(frozen=True)
class SceneDescription:
    """What one image shows; ``None`` means unstated (a caption or an intent may leave it open).

    A fully specified description (no ``None``) renders to one image per ``variant``.
    """

    scene: str | None = None
    object: str | None = None
    colour: str | None = None
    count: str | None = None
    size: str | None = None
    position: str | None = None
    lighting: str | None = None
    degradation: str | None = None

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            value = getattr(self, name)
            if value is not None and value not in VOCABULARY[name]:
                raise ValueError(f"{name}: {value!r} is not one of {', '.join(VOCABULARY[name])}")

    def specified(self) -> dict[str, str]:
        """The stated attributes, in grammar order."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def is_complete(self) -> bool:
        """True when every attribute is stated."""
        return all(getattr(self, f.name) is not None for f in fields(self))

    def indices(self) -> np.ndarray:
        """Value index per attribute (``-1`` for unstated), shape ``(8,)``."""
        return np.array([VOCABULARY[a].index(getattr(self, a)) if getattr(self, a) is not None else -1
                         for a in ATTRIBUTES], dtype=np.int64)

    @classmethod
    def from_indices(cls, idx) -> "SceneDescription":
        """Inverse of :meth:`indices`."""
        return cls(**{a: (VOCABULARY[a][int(i)] if int(i) >= 0 else None) for a, i in zip(ATTRIBUTES, idx)})


def sample_description(rng: np.random.Generator) -> SceneDescription:
    """A complete description drawn from the prior (uniform; degradations per ``DEGRADATION_PRIOR``)."""
    values = {a: VOCABULARY[a][int(rng.integers(len(VOCABULARY[a])))] for a in ATTRIBUTES if a != "degradation"}
    values["degradation"] = DEGRADATIONS[int(rng.choice(len(DEGRADATIONS), p=DEGRADATION_PRIOR))]
    return SceneDescription(**values)


def drop_attributes(description: SceneDescription, rng: np.random.Generator, keep_probability: float = 0.5
                    ) -> SceneDescription:
    """The description with each non-raw attribute kept with ``keep_probability`` (training captions)."""
    dropped = {a: None for a in ATTRIBUTES if a not in RAW_ATTRIBUTES and rng.random() >= keep_probability}
    return replace(description, **dropped)


def _article(word: str) -> str:
    return "An" if word[0] in "aeiou" else "A"


def caption(description: SceneDescription) -> str:
    """The caption of a description (unstated attributes are left out); scene and object required.

    >>> caption(SceneDescription(scene="ocean", object="ball", colour="red", count="two", lighting="night"))
    'An ocean at night, with two red balls'
    """
    d = description
    if d.scene is None or d.object is None:
        raise ValueError("a caption needs a scene and an object")
    head = f"{_article(d.scene)} {d.scene}"
    if d.lighting is not None:
        head += f" {_LIGHTING_PHRASE[d.lighting]}"
    words = [w for w in (d.size, d.colour) if w is not None]
    if d.count is None:
        words = [_article(words[0] if words else d.object).lower(), *words, d.object]
    else:
        words = [d.count, *words, d.object if d.count == "one" else _PLURALS[d.object]]
    text = f"{head}, with {' '.join(words)}"
    if d.position is not None:
        text += f" {_POSITION_PHRASE[d.position]}"
    if d.degradation is not None:
        text += f", {_DEGRADATION_WORD[d.degradation]}"
    return text


def raw_prompt(description: SceneDescription) -> str:
    """The seeds' raw prompt ``"A [scene], with [object]"`` of a description."""
    return caption(SceneDescription(scene=description.scene, object=description.object))


@dataclass(frozen=True)
class ParsedText:
    """What :func:`parse` read from a text: the stated attributes, the unknown words and conflicts."""

    description: SceneDescription
    unknown_words: tuple[str, ...]
    conflicts: tuple[str, ...]


def parse(text: str) -> ParsedText:
    """Read the attributes a text states (inverse of :func:`caption` on its captions).

    The last mention of an attribute wins; a second, different value for the same attribute
    is listed in ``conflicts``. Words that are neither vocabulary nor grammar filler are
    returned in ``unknown_words`` (the judge cannot check them).
    """
    values: dict[str, str] = {}
    unknown: list[str] = []
    conflicts: list[str] = []
    for word in re.findall(r"[a-z]+", text.lower()):
        hit = _KEYWORDS.get(word)
        if hit is None:
            if word not in FILLER_WORDS and word not in unknown:
                unknown.append(word)
            continue
        attr, value = hit
        if attr in values and values[attr] != value:
            conflicts.append(f"{attr}: {values[attr]} / {value}")
        values[attr] = value
    return ParsedText(SceneDescription(**values), tuple(unknown), tuple(conflicts))
