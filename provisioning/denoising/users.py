"""Users of the denoising problem: the ``--personalities`` TOML file and the built-in pools.

What this module is for: reading ``[[user]]`` tables (``name``, ``prompt``, the five traits in
[0, 1], optional ``held_out = true``) with one-line errors naming the file and the field, and
the built-in training and held-out users used when no file is given. Prompts are free text;
the scene judge checks the attributes it knows (``provisioning.backend.scenes.parse``).

May import: tomllib, ``market`` (errors), this package's evaluators.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from market.errors import UserError

from .evaluators import GA1, GA2, Personality, personality_from_mapping
from .problem import User


def load_users(path: str | Path) -> tuple[list[User], list[User]]:
    """``(training users, held-out users)`` of a personalities file (held-out: ``held_out = true``)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    tables = data.get("user")
    if not isinstance(tables, list) or not tables:
        raise UserError(f"{path}: no [[user]] tables")
    train, held = [], []
    for i, table in enumerate(tables):
        where = f"{path}: user[{i}]"
        for name in ("name", "prompt"):
            if not isinstance(table.get(name), str) or not table[name].strip():
                raise UserError(f"{where}.{name}: missing or not a non-empty string")
        held_out = table.get("held_out", False)
        if not isinstance(held_out, bool):
            raise UserError(f"{where}.held_out: {held_out!r} is not true or false")
        unknown = sorted(set(table) - {"name", "prompt", "held_out", *Personality.__dataclass_fields__})
        if unknown:
            raise UserError(f"{where}: unknown field {unknown[0]!r}")
        user = User(table["name"], table["prompt"], personality_from_mapping(table, where))
        (held if held_out else train).append(user)
    if not train:
        raise UserError(f"{path}: every user is held_out; at least one must be for training")
    return train, held


def builtin_users() -> tuple[list[User], list[User]]:
    """Training users (GA1, GA2 and three others) and three held-out users (other prompts and traits)."""
    train = [
        User("ga1", "A grassland in daylight, with one large white house in the centre", GA1),
        User("ga2", "A grassland in daylight, with one large red car in the centre", GA2),
        User("calm", "An ocean at dusk, with two small yellow balls on the left", Personality(.3, .7, .4, .6, .2)),
        User("bold", "A city at night, with three large orange stars on the right", Personality(.8, .3, .9, .4, .3)),
        User("tense", "A desert in daylight, with one small green box in the centre", Personality(.4, .5, .2, .5, .9)),
    ]
    held = [
        User("h-open", "A forest at dusk, with two large purple trees on the left", Personality(.9, .4, .6, .2, .4)),
        User("h-kind", "A snowfield in daylight, with one small blue car on the right", Personality(.3, .6, .5, .9, .2)),
        User("h-mixed", "A grassland at night, with three small white balls in the centre", Personality(.6, .6, .3, .5, .6)),
    ]
    return train, held
