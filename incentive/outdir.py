"""Output paths: one policy for every command, and folders that appear whole or not at all.

What this module is for: every command that writes results checks its output path here
BEFORE it starts working, so that nothing computed is lost to a bad path and nothing a user
has is deleted without their say. The policy (README, "Output paths"):

1. A file output (``solve --out result.json``) must name a file: not an existing folder, not a
   device or other special file, not a path below a regular file, and its folder must be
   writable (checked by creating and removing a probe file, which also catches ``/proc``, a
   read-only mount or a full disk). An existing regular file is replaced atomically.
2. A folder output is never put in place of an existing file, never replaces the current
   folder (``--out .``) or a folder that contains it, and never deletes an existing non-empty
   folder: that is refused (exit 2, one line) unless the user passes ``--overwrite``, or the
   folder holds this command's own earlier output with the same configuration (the hidden
   marker :data:`MARKER`, written into every folder output): then a staged command replaces it
   and a resumable command (``sweep``, ``provision train``) resumes in it. A different
   configuration is refused and the first differing field is named.
3. Staged outputs (``run``, ``compare``) are written into a hidden staging folder beside the
   target, ``.NAME.partial-HOST-PID-XXXX``, and renamed into place only when complete; an
   error, Ctrl-C or SIGTERM removes it. Staging folders whose process is dead (a SIGKILL) are
   removed by the next staged write into the same parent folder.
4. Folders get the permissions ``mkdir`` gives under the user's umask.

Hand-written because no library offers this policy: :mod:`tempfile` makes 0700 folders with
no owner record, and :mod:`shutil` has no notion of "the user's folder".

May import: the standard library, ``market.atomic`` and ``market.errors``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from market.atomic import atomic_write_json, json_ready
from market.errors import UserError

#: Hidden file in every folder output: which command wrote it and with what configuration.
MARKER = ".incentive.json"
#: Staging and set-aside folders: ``.NAME.partial-HOST-PID-TOKEN`` / ``.NAME.old-HOST-PID-TOKEN``.
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]+$")


def _host_tag() -> str:
    """Eight hex digits naming this machine, so that a shared file system's other hosts'
    staging folders are never taken for dead ones."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


class OutputPathError(UserError):
    """An output path that the policy refuses (exit code 2)."""


@dataclass
class OutputPlan:
    """A checked folder output: where, why it may be written, and the marker to leave."""

    path: Path
    """The target folder (absolute)."""
    mode: str
    """``"new"`` (absent or empty), ``"own"`` (this command's earlier output, same configuration)
    or ``"overwrite"`` (the user passed ``--overwrite``)."""
    command: str | None = None
    """Command name recorded in the marker (``None``: no marker)."""
    identity: dict | None = None
    """Configuration recorded in the marker; equal identity = the same run."""
    display: str = ""
    """The path as the user typed it (for messages)."""
    entries: list = field(default_factory=list)
    """Names found in the folder when it was checked."""

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.display or str(self.path)


#: Folder outputs checked by a command and not yet written, by absolute path.
_CLAIMS: dict[Path, OutputPlan] = {}


# ----------------------------------------------------------------------------- checks
def _absolute(path: str | Path, flag: str) -> Path:
    text = os.fspath(path)
    if not text.strip():
        raise OutputPathError(f"{flag}: the output path is empty")
    if "\x00" in text:
        raise OutputPathError(f"{flag} {text!r}: the path contains a NUL character")
    return Path(os.path.abspath(text))


def _check_writable_location(target: Path, shown: str, flag: str) -> None:
    """Every existing ancestor must be a folder, and the nearest one writable (by a probe)."""
    ancestor = target.parent
    while True:
        try:
            if ancestor.exists():
                break
        except OSError as exc:
            raise OutputPathError(f"{flag} {shown}: cannot inspect {ancestor} ({exc.strerror})") from None
        if ancestor.is_symlink():  # a dangling link in the way
            raise OutputPathError(f"{flag} {shown}: {ancestor} is a broken symbolic link")
        ancestor = ancestor.parent
    for part in [target.parent, *target.parent.parents]:
        if part.exists() and not part.is_dir():
            raise OutputPathError(f"{flag} {shown}: {part} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".incentive-probe-", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputPathError(f"{flag} {shown}: cannot write in {ancestor} ({reason})") from None


def check_output_file(path: str | Path, *, flag: str = "--out") -> Path:
    """Check a file output before any work; returns its absolute path.

    Raises
    ------
    OutputPathError
        The path is empty, names an existing folder or special file, ends with a separator,
        lies below a regular file, or its folder cannot be written.
    """
    shown = os.fspath(path)
    target = _absolute(path, flag)
    if shown.endswith(("/", os.sep)):
        raise OutputPathError(f"{flag} {shown}: names a folder; give a file name (e.g. {shown.rstrip('/')}/result.json)")
    if target.is_dir():
        raise OutputPathError(f"{flag} {shown}: is a folder; give a file name (e.g. {shown.rstrip('/')}/result.json)")
    if target.exists() and not target.is_file():
        raise OutputPathError(f"{flag} {shown}: is not a regular file (a device, pipe or socket); give a file name")
    _check_writable_location(target, shown, flag)
    return target


def _first_difference(old: Any, new: Any, prefix: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
            if found:
                return found
        return None
    return None if old == new else (prefix or "configuration", old, new)


def read_marker(folder: Path) -> dict | None:
    """The marker of a folder output, or ``None`` when absent or unreadable."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_output_dir(path: str | Path, *, command: str | None = None, identity: dict | None = None,
                     overwrite: bool = False, flag: str = "--out", what: str | None = None,
                     adopt: Callable[[Path], bool] | None = None) -> OutputPlan:
    """Check a folder output before any work, and remember the decision for the writer.

    Parameters
    ----------
    path : the folder the user asked for.
    command : the command's name, recorded in the folder's marker (e.g. ``"compare"``).
    identity : the command's configuration (JSON-ready dict); an existing folder whose marker
        has the same command and identity is this command's own run (resumed or replaced).
    overwrite : the user passed ``--overwrite``: an existing non-empty folder may be replaced.
    what : how messages call a run of this command (default ``"<command> run"``).
    adopt : for folders written before markers existed: called on an unmarked non-empty folder,
        ``True`` means it is this command's own run.

    Raises
    ------
    OutputPathError
        See the module docstring for the policy.
    """
    shown = os.fspath(path)
    target = _absolute(path, flag)
    identity = json_ready(identity) if identity is not None else None
    cwd = Path(os.path.abspath(os.getcwd()))
    if target == cwd or target in cwd.parents or target.parent == target:
        raise OutputPathError(f"{flag} {shown}: is the current folder or contains it, which is never replaced; "
                              f"name a new sub-folder (e.g. {flag} results/run1)")
    if target.is_symlink():
        raise OutputPathError(f"{flag} {shown}: is a symbolic link; give the folder it points to or a new name")
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {shown}: is a file; an output folder never replaces a file (choose another {flag})")
    entries: list[str] = []
    mode = "new"
    if target.is_dir():
        try:
            entries = sorted(p.name for p in target.iterdir())
        except OSError as exc:
            raise OutputPathError(f"{flag} {shown}: cannot list it ({exc.strerror})") from None
        if entries:
            marker = read_marker(target)
            same_command = marker is not None and command is not None and marker.get("command") == command
            if same_command and marker.get("identity") == identity:
                mode = "own"
            elif marker is None and adopt is not None and _adopts(adopt, target):
                mode = "own"
            elif overwrite:
                mode = "overwrite"
            elif same_command:
                name, old, new = _first_difference(marker.get("identity"), identity) or ("configuration", None, None)
                raise OutputPathError(
                    f"{flag} {shown}: holds a different {what or command + ' run'} (field '{name}' is {old!r} there, "
                    f"{new!r} now); choose another {flag} or pass --overwrite to replace it")
            else:
                example = next((e for e in entries if e != MARKER), entries[0])
                raise OutputPathError(
                    f"{flag} {shown}: exists and is not empty ({len(entries)} entries, e.g. {example!r}); it is never "
                    f"deleted: choose another {flag} or pass --overwrite to replace it")
    _check_writable_location(target, shown, flag)
    plan = OutputPlan(path=target, mode=mode, command=command, identity=identity, display=shown, entries=entries)
    _CLAIMS[target] = plan
    return plan


def forget_claims() -> None:
    """Drop every unused decision of :func:`check_output_dir` (the CLI calls this after each
    command, so a decision, e.g. ``--overwrite``, never outlives the command that made it)."""
    _CLAIMS.clear()


def _adopts(adopt: Callable[[Path], bool], folder: Path) -> bool:
    try:
        return bool(adopt(folder))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _plan_for(target: str | Path | OutputPlan) -> OutputPlan:
    if isinstance(target, OutputPlan):
        _CLAIMS.pop(target.path, None)
        return target
    absolute = _absolute(target, "--out")
    return _CLAIMS.pop(absolute, None) or check_output_dir(target)


def _write_marker(folder: Path, plan: OutputPlan) -> None:
    if plan.command is not None:
        atomic_write_json(folder / MARKER, {"command": plan.command, "identity": plan.identity})


# ----------------------------------------------------------------------------- resumable folders
def open_run_dir(target: str | Path | OutputPlan) -> Path:
    """Create (or reopen) the folder of a resumable command and mark it; returns its path.

    A folder checked with ``overwrite`` is emptied first (the user said so); an ``"own"``
    folder is kept as it is, so the command resumes in it.
    """
    plan = _plan_for(target)
    if plan.mode == "overwrite" and plan.path.exists():
        for entry in plan.path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    plan.path.mkdir(parents=True, exist_ok=True)
    _write_marker(plan.path, plan)
    return plan.path


# ----------------------------------------------------------------------------- staged folders
def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def clean_stale_staging(parent: str | Path) -> list[Path]:
    """Remove staging folders in ``parent`` left by killed runs of this machine (owner process
    dead); a set-aside old output whose target is missing is put back. Returns what was removed."""
    parent = Path(parent)
    removed: list[Path] = []
    host = _host_tag()
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.match(name)
        if not match or match["host"] != host or _pid_alive(int(match["pid"])):
            continue
        path = parent / name
        if match["kind"] == "old" and not (parent / match["name"]).exists():
            with contextlib.suppress(OSError):
                os.replace(path, parent / match["name"])  # the kill came between the two renames
                continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for a few renames, so a folder is never left half-swapped."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def staged_output_dir(target: str | Path | OutputPlan) -> Iterator[Path]:
    """Yield a staging folder; on normal exit move it to ``target``.

    ``target`` should have been checked by :func:`check_output_dir` before the work started
    (that decision is used here); an unchecked target gets the default policy (no
    ``--overwrite``). An old folder is replaced only on success, and only where the policy
    allows it.

    Parameters
    ----------
    target : str, Path or OutputPlan
        The folder the caller wants in the end.

    Yields
    ------
    Path
        A fresh, empty folder on the same file system as ``target``, with the permissions
        ``mkdir`` gives under the umask.
    """
    plan = _plan_for(target)
    final = plan.path
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(final.parent)
    tag = f"{_host_tag()}-{os.getpid()}-{secrets.token_hex(4)}"
    staging = final.parent / f".{final.name}.partial-{tag}"
    staging.mkdir()
    try:
        yield staging
        _write_marker(staging, plan)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{tag}"
    with _signals_held():
        if final.is_dir() and not final.is_symlink():
            present = sorted(p.name for p in final.iterdir())
            if present and plan.mode not in ("own", "overwrite"):
                _keep_aside(staging, final, tag, "was filled by something else while this command ran; nothing was deleted")
            os.replace(final, old)
        elif final.exists() or final.is_symlink():
            _keep_aside(staging, final, tag, "a file appeared there while this command ran")
        os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)



def _keep_aside(staging: Path, final: Path, tag: str, why: str) -> None:
    """Give a finished staging folder a visible name (the stale-staging clean-up never takes it)
    and raise, saying where the output is."""
    kept = final.parent / f"{final.name}.new-{tag}"
    os.replace(staging, kept)
    raise OutputPathError(f"{final}: {why}; the new output is in {kept}")
