"""The one CSV writer and the one figure convention of market.atomic."""
from __future__ import annotations

import csv

import pytest

from market.atomic import atomic_write_csv, atomic_write_png, csv_text, png_bytes


def test_csv_text_and_atomic_write_csv(tmp_path):
    assert csv_text(["a", "b"], [[1, None], ["x,y", 2.5]]) == 'a,b\n1,\n"x,y",2.5\n'
    path = atomic_write_csv(tmp_path / "sub" / "t.csv", ["a", "b"], [[1, 2]])
    with open(path, newline="") as handle:
        assert list(csv.reader(handle)) == [["a", "b"], ["1", "2"]]


def test_png_bytes_renders_and_closes(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    data = png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and not plt.fignum_exists(fig.number)
    fig2, _ = plt.subplots()
    path = atomic_write_png(tmp_path / "f.png", fig2)
    assert path.read_bytes()[:4] == b"\x89PNG" and not plt.fignum_exists(fig2.number)
