"""Trained policies shipped with the repository, and their cards.

One D3PG policy per scenario name: ``d3pg-<scenario>.safetensors`` (weights of the actor, the
observation normaliser and the critic used for best-of-K, with the D3PG config as metadata)
next to ``d3pg-<scenario>.card.json`` (the command that made it, steps, seed, the scenario
file's SHA-256, the measured fraction of the oracle on held-out states).

May import: the standard library and ``market.errors``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from market.errors import MissingArtifactError

TRAINED_DIR = Path(__file__).resolve().parent


def shipped_policy_path(scenario_name: str, agent: str = "d3pg") -> Path:
    """Path of the shipped policy for ``scenario_name`` (may not exist)."""
    return TRAINED_DIR / f"{agent}-{scenario_name}.safetensors"


def shipped_card_path(scenario_name: str, agent: str = "d3pg") -> Path:
    """Path of the card (JSON) of the shipped policy for ``scenario_name``."""
    return TRAINED_DIR / f"{agent}-{scenario_name}.card.json"


def read_card(scenario_name: str, agent: str = "d3pg") -> dict:
    """The card of the shipped policy; :class:`MissingArtifactError` if there is none."""
    path = shipped_card_path(scenario_name, agent)
    if not path.is_file():
        raise MissingArtifactError(
            f"{path}: no shipped {agent} policy for scenario '{scenario_name}'; train one with "
            f"`incentive provision train --agent {agent} --scenario {scenario_name}` and evaluate it with --run"
        )
    return json.loads(path.read_text())


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (scenario identity on cards)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
