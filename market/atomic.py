"""Atomic file writes, so that an interrupted run never leaves a half-written result.

What this module is for: write to a temporary file in the target's folder, flush and
fsync, then ``os.replace`` it over the target. A reader sees the old file or the new
one, never a partial one; Ctrl-C during a write loses nothing that was already there.

May import: the standard library only (matplotlib, lazily: the headless pyplot, closing a figure it was given).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path, PurePath
from typing import Any


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where the OS allows.

    Linux exposes it in ``/proc/self/status``; elsewhere it is read by setting and restoring it
    (``os.umask`` has no read-only form).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; create parent folders. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON (NaN/inf rejected) and write it atomically."""
    text = json.dumps(obj, indent=indent, allow_nan=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def csv_text(header: list, rows: list) -> str:
    """CSV text (``\\n`` line ends) of a header and rows; the one CSV writer of the project."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def atomic_write_csv(path: str | Path, header: list, rows: list) -> Path:
    """Write a CSV table (header, rows) atomically."""
    return atomic_write_text(path, csv_text(header, rows))


def headless_pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display needed): the one way the
    project's figure writers import pyplot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, *, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes (tight bounding box) and close it: the one way the
    project renders a figure (write the bytes with :func:`atomic_write_bytes`, or use
    :func:`atomic_write_png`)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    import matplotlib.pyplot as plt  # only reached by callers that made a figure

    plt.close(fig)
    return buffer.getvalue()


def atomic_write_png(path: str | Path, fig, *, dpi: int = 110) -> Path:
    """Render ``fig`` (:func:`png_bytes`) and write it to ``path`` atomically."""
    return atomic_write_bytes(path, png_bytes(fig, dpi=dpi))


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that :func:`json.dumps` accepts with ``allow_nan=False``.

    Dict keys become strings; tuples become lists; numpy arrays and scalars (duck-typed by
    ``tolist``, numpy is not imported) become Python lists and numbers; NaN and +/-inf become
    ``None`` (e.g. the latency of an MU that gets no resources); paths become strings; any
    other object becomes ``str(obj)``.
    """
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):
        return json_ready(obj.tolist())
    return str(obj)


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars and arrays (duck-typed, numpy not imported) to JSON types."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
