"""``incentive prompts``: corpus, dataset, evaluate (no training here), rounds; request-file validation."""
from __future__ import annotations

import json

import pytest

from incentive.cli import main


def test_corpus_command(capsys):
    assert main(["prompts", "corpus", "--raw", "A desert, with a car", "--seed", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["items"] == 18 and len(data["strategies"]) == 7
    assert data["strategies"][0]["prompt"] == "A desert, with a car"
    assert data["strategies"][6]["negative_prompt"]


def test_corpus_rejects_a_prompt_outside_the_world(capsys):
    assert main(["prompts", "corpus", "--raw", "A moon, with a cat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: raw prompt") and err.count("\n") == 1


@pytest.mark.parametrize("body, field", [
    ("", "request"),
    ('[[request]]\nraw = "A city, with a car"\n', "request[0].intent"),
    ('[[request]]\nraw = "A moon, with a cat"\nintent = "x"\n', "request[0].raw"),
    ('[[request]]\nraw = "A city, with a car"\nintent = "A city, with a red car"\nthreshold = 11\n',
     "request[0].threshold"),
    ('[[request]]\nraw = "A city, with a car"\nintent = "A city, with a red car"\ncolour = "red"\n',
     "request[0].colour"),
    ('[[request]\n', None),
])
def test_bad_request_files_are_one_line_errors(tmp_path, capsys, body, field):
    path = tmp_path / "requests.toml"
    path.write_text(body)
    code = main(["prompts", "dataset", "--out", str(tmp_path / "d.npz"), "--requests", str(path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(path) in err
    if field:
        assert f"field '{field}'" in err
    assert not (tmp_path / "d.npz").exists()


def test_dataset_evaluate_rounds_at_tiny_size(tmp_path, capsys):
    requests = tmp_path / "requests.toml"
    requests.write_text('[[request]]\nraw = "A city, with a car"\nintent = "A city at night, with a blue car"\n'
                        'threshold = 6\n\n[[request]]\nraw = "An ocean, with a star"\n'
                        'intent = "An ocean in daylight, with a yellow star"\n')
    d = tmp_path / "d.npz"
    assert main(["prompts", "dataset", "--out", str(d), "--count", "4", "--images", "2", "--quiet"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["entries"] == 4 * 7 * 3 * 2 and d.exists()
    assert main(["prompts", "dataset", "--out", str(d), "--count", "4", "--quiet"]) == 2  # no overwrite
    assert "--overwrite" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    assert main(["prompts", "evaluate", "--dataset", str(d), "--requests", str(requests), "--seeds", "2",
                 "--policy", "random", "empirical", "expert", "raw", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["provisional"] is True and data["heldout_requests"] == 2
    for name in ("random", "empirical", "expert", "raw"):
        rec = data["policies"][name]
        assert set(rec) >= {"mean_score", "single_round_success", "fraction_of_expert"}
        assert rec["fraction_of_expert"]["mean"] <= 1.0 + 1e-9
    assert data["policies"]["random"]["seeds"] == 2 and data["policies"]["expert"]["fraction_of_expert"]["mean"] == 1
    capsys.readouterr()
    assert main(["prompts", "rounds", "--evaluation", str(out), "--model", "empirical"]) == 0
    rounds = json.loads(capsys.readouterr().out)
    assert len(rounds["policies"]["expert"]["rounds"]) == 11
    assert main(["prompts", "rounds", "--evaluation", str(d)]) == 2


def test_curves_figures_and_grid_at_tiny_size(tmp_path, capsys):
    """evaluate records PPO's training curve per seed (GAIL's: the slow test); figures and grid write PNGs."""
    d, e = tmp_path / "d.npz", tmp_path / "e.npz"
    assert main(["prompts", "dataset", "--out", str(d), "--count", "4", "--images", "2", "--quiet"]) == 0
    assert main(["prompts", "dataset", "--out", str(e), "--count", "2", "--images", "2", "--seed", "1",
                 "--exclude", str(d), "--quiet"]) == 0
    capsys.readouterr()
    evaluation, rounds = tmp_path / "eval.json", tmp_path / "rounds.json"
    assert main(["prompts", "evaluate", "--dataset", str(d), "--heldout", str(e), "--seeds", "2", "--timesteps", "512",
                 "--policy", "ppo", "empirical", "--out", str(evaluation)]) == 0
    data = json.loads(evaluation.read_text())
    for name in ("ppo",):
        curves = data["policies"][name]["curves"]
        assert len(curves) == 2 and [p[0] for p in curves[0]] == [256, 512]
        # the curve's last held-out point is the evaluated policy's score
        assert [c[-1][1] for c in curves] == pytest.approx([s["mean_score"] for s in data["policies"][name]["per_seed"]])
    assert data["policies"]["empirical"]["curves"] == []
    assert main(["prompts", "rounds", "--evaluation", str(evaluation), "--out", str(rounds)]) == 0
    assert main(["prompts", "figures", "--evaluation", str(evaluation), "--rounds", str(rounds),
                 "--out", str(tmp_path / "fig")]) == 0
    assert main(["prompts", "grid", "--out", str(tmp_path / "fig"), "--images", "1", "--scorer", "big-five:GA2"]) == 0
    grid = json.loads((tmp_path / "fig" / "fig10-strategies.json").read_text())
    assert len(grid["cells"]) == 3 * 7 and grid["scorer"] == "big-five:GA2"
    for png in ("fig10-strategies.png", "fig11-training.png", "fig12-rounds.png"):
        assert (tmp_path / "fig" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["prompts", "figures", "--evaluation", str(d), "--out", str(tmp_path / "fig")]) == 2


@pytest.mark.slow
def test_experiment_command_end_to_end_and_resume(tmp_path, capsys):
    """`prompts experiment` at toy size: every file, criteria computed from the table, refusal, resume."""
    pytest.importorskip("imitation")
    out = tmp_path / "x"
    argv = ["prompts", "experiment", "--out", str(out), "--count", "3", "--heldout-count", "2", "--images", "2",
            "--seeds", "2", "--timesteps", "256", "--grid-images", "1", "--quiet"]
    assert main(argv) == 0
    for name in ("D.npz", "E.npz", "evaluation.json", "rounds.json", "summary.json", "fig10-strategies.png",
                 "fig11-training.png", "fig12-rounds.png", "fig12-rounds-shifted.png", "rounds-shifted.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    table, crit = summary["table"], summary["criteria"]
    assert set(table) == {"gail", "ppo", "random", "empirical", "expert", "raw"}
    assert crit["gail_fraction_of_expert"] == table["gail"]["fraction_of_expert"]["mean"]
    gap = crit["gail_vs_empirical"]
    assert gap["difference"] == pytest.approx(table["gail"]["mean_score"]["mean"] - table["empirical"]["mean_score"]["mean"])
    assert gap["above_by_more_than_spread"] == (gap["difference"] > gap["seed_spread"])
    assert 0 < crit["expert_split_half"]["fraction"] <= 1.0 + 1e-9
    shifted = json.loads((out / "rounds-shifted.json").read_text())
    shift = table["gail"]["mean_score"]["mean"] - 8.06
    assert shifted["policies"]["gail"]["thresholds"][0] == pytest.approx(7.5 + shift, abs=1e-3)
    assert summary["claims_shifted_thresholds"]["threshold_shift"] == pytest.approx(shift)
    from provisioning.prompting.dataset import DemonstrationDataset

    d, e = (DemonstrationDataset.load(out / n) for n in ("D.npz", "E.npz"))
    assert not {r.raw for r in d.requests} & {r.raw for r in e.requests}   # held-out prompts are not in D
    assert d.config["scorer"] == "big-five:GA1"
    capsys.readouterr()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err      # never replaced without a say
    built = (out / "D.npz").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0 and (out / "D.npz").stat().st_mtime_ns == built   # D reused
    assert main(argv[:-1] + ["--scorer", "judge", "--resume", "--quiet"]) == 2   # another experiment's D
