"""User-facing error types shared by every layer.

What this module is for: one family of exceptions that the command line turns into a
clear message and exit code 2 (never a traceback). Every layer raises these for bad
input; :class:`ScenarioError` names the file and the field.

May import: the standard library only (every other module of the project may import it).
"""
from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """An error caused by the user's input or environment, reported without a traceback.

    The command line prints ``str(error)`` and exits with :attr:`exit_code`.
    """

    exit_code: int = 2


class ScenarioError(UserError, ValueError):
    """A scenario file (or an in-memory scenario) is malformed.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    file : str or Path, optional
        The file the value came from (``"<memory>"`` when built in code).
    field : str, optional
        Dotted path of the offending field, e.g. ``"mu[3].weights.accuracy"``.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None):
        self.message = message
        self.file = str(file) if file is not None else "<memory>"
        self.field = field
        where = f"{self.file}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")


class InfeasibleError(UserError):
    """The model has no feasible point (e.g. a QoE floor that no reward can buy)."""


class MissingArtifactError(UserError):
    """A file the command needs (a trained policy, a shipped model) is not there.

    The message says how to make it.
    """
