"""Output folders that appear whole or not at all.

What this module is for: commands that write several files (report, JSON, CSVs, plots) write
them into a hidden staging folder beside the target and rename it into place only when every
file is written. An error or Ctrl-C removes the staging folder, so no partial output is ever
left looking complete. A previous folder of the same name is replaced only on success.

May import: the standard library and ``market.atomic``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_output_dir(target: str | Path) -> Iterator[Path]:
    """Yield a staging folder; on normal exit move it to ``target`` (replacing an old one).

    Parameters
    ----------
    target : str or Path
        The folder the caller wants in the end.

    Yields
    ------
    Path
        A fresh, empty folder on the same file system as ``target``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
