"""Staged output folders: whole on success, absent on failure, old results kept on failure."""
import pytest

from incentive.outdir import check_output_dir, staged_output_dir


def test_success_moves_folder_into_place(tmp_path):
    target = tmp_path / "out"
    with staged_output_dir(target) as stage:
        (stage / "a.txt").write_text("done")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_leaves_nothing_and_keeps_previous(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("previous run")
    plan = check_output_dir(target, overwrite=True)
    with pytest.raises(RuntimeError):
        with staged_output_dir(plan) as stage:
            (stage / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert (target / "old.txt").read_text() == "previous run"
    assert not (target / "half.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_keyboard_interrupt_cleans_up(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with staged_output_dir(target) as stage:
            (stage / "half.txt").write_text("partial")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
