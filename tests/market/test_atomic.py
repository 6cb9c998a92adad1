"""Atomic writes: whole file or the old one, normal permissions, no stray temporaries."""
import json
import os
import stat

import pytest

from market.atomic import atomic_write_json, atomic_write_text


def test_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "x.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_nan_is_rejected_and_old_file_kept(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ok": True})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"bad": float("nan")})
    assert json.loads(target.read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_json_ready_converts_numpy_nan_paths_and_keys():
    import math
    from pathlib import Path

    import numpy as np

    from market.atomic import json_ready

    data = {1: np.array([[1.0, np.nan], [np.inf, 2.0]]), "n": np.int64(3), "b": np.bool_(True),
            "f": np.float32(0.5), "p": Path("a/b"), "t": (1, float("-inf")), "o": object}
    out = json_ready(data)
    assert out["1"] == [[1.0, None], [None, 2.0]]
    assert out["n"] == 3 and type(out["n"]) is int
    assert out["b"] is True
    assert out["f"] == 0.5 and out["p"] == "a/b" and out["t"] == [1, None]
    assert isinstance(out["o"], str)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert not math.isnan(out["f"])
