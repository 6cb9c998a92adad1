"""``incentive denoise``: personalities validation (exit 2, file and field) and a tiny evaluate run."""
import json

import pytest

from incentive.cli import main

USER = """[[user]]
name = "{name}"
prompt = "A grassland in daylight, with one large {what} in the centre"
openness = 0.5
conscientiousness = 0.5
extraversion = 0.5
agreeableness = {agreeableness}
neuroticism = 0.5
held_out = {held}
"""


def test_trait_outside_unit_interval_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "users.toml"
    path.write_text(USER.format(name="a", what="red car", agreeableness=1.3, held="false"))
    assert main(["denoise", "evaluate", "--personalities", str(path), "--generator", "render"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "user[0].agreeableness" in err and "\n" not in err


@pytest.mark.parametrize("body, field", [("[[user]]\nname = 'x'\n", "user[0].prompt"), ("x = 1\n", "no [[user]]")])
def test_malformed_files_name_the_field(tmp_path, capsys, body, field):
    path = tmp_path / "users.toml"
    path.write_text(body)
    assert main(["denoise", "evaluate", "--personalities", str(path), "--generator", "render"]) == 2
    assert field in capsys.readouterr().err


def test_tiny_evaluate_writes_every_requested_policy(tmp_path, capsys):
    path = tmp_path / "users.toml"
    path.write_text(USER.format(name="a", what="red car", agreeableness=0.9, held="false")
                    + USER.format(name="b", what="white house", agreeableness=0.1, held="false")
                    + USER.format(name="c", what="blue box", agreeableness=0.5, held="true"))
    out = tmp_path / "result.json"
    code = main(["denoise", "evaluate", "--personalities", str(path), "--generator", "render", "--devices", "2",
                 "--cache", str(tmp_path / "cache"), "--seeds", "2", "--states", "2", "--policy", "random", "local", "optimum",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["provisional"] is True and result["held_out_users"] == ["c"]
    assert result["constants"]["devices"] == 2 and result["constants"]["action_decoding"] == "grid"
    for name in ("random", "local", "optimum"):
        row = result["policies"][name]
        assert {"sum_qoe", "fraction_of_optimum", "threshold_violations"} <= set(row)
    assert result["policies"]["random"]["sum_qoe"]["n"] == 2
    assert result["policies"]["random"]["fraction_of_optimum"]["max"] <= 1.0 + 1e-9


def test_existing_output_is_not_replaced_without_overwrite(tmp_path, capsys):
    out = tmp_path / "result.json"
    out.write_text("mine")
    assert main(["denoise", "evaluate", "--generator", "render", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "mine"


def test_train_writes_a_run_folder_and_resumes_only_when_asked(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["denoise", "train", "--generator", "render", "--cache", str(tmp_path / "cache"), "--devices", "2",
            "--t0-grid", "0,2", "--tk-grid", "2,4", "--noise-seeds", "1", "--steps", "8", "--warmup", "2",
            "--eval-every", "4", "--eval-states", "1", "--no-progress", "--out", str(run)]
    assert main(argv) == 0
    assert (run / "policy.safetensors").is_file() and json.loads((run / "result.json").read_text())["steps_done"] == 8
    capsys.readouterr()
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # finished: returned as it is


def test_train_with_select_best_names_the_kept_policy_and_refuses_a_plain_run(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["denoise", "train", "--generator", "render", "--cache", str(tmp_path / "cache"), "--devices", "2",
            "--t0-grid", "0,2", "--tk-grid", "2,4", "--noise-seeds", "1", "--steps", "8", "--warmup", "2",
            "--eval-every", "4", "--eval-states", "1", "--no-progress", "--out", str(run)]
    assert main(argv + ["--select-best", "--selection-states", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["best"]["step"] in (4, 8) and printed["best_policy_file"] == str(run / "best" / "policy.safetensors")
    assert (run / "best" / "policy.safetensors").is_file()
    assert main(argv + ["--resume"]) == 2  # the folder was made with model selection: not resumed without it
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "select_best" in err


def test_bad_grid_is_a_one_line_error(capsys):
    assert main(["denoise", "cache", "--generator", "render", "--tk-grid", "4,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--tk-grid 4,2" in err and "\n" not in err


@pytest.mark.parametrize("option, value", [("--device-budget", "4,0"), ("--device-budget", "inf"), ("--server-budget", "-1")])
def test_bad_budget_is_a_one_line_error(capsys, option, value):
    assert main(["denoise", "cache", "--generator", "render", option, value]) == 2
    err = capsys.readouterr().err.strip()
    assert option in err and "\n" not in err and "Traceback" not in err


def test_train_within_budgets_is_its_own_run_and_a_bad_choice_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["denoise", "train", "--generator", "render", "--cache", str(tmp_path / "cache"), "--devices", "2",
            "--t0-grid", "0,2", "--tk-grid", "2,4", "--noise-seeds", "1", "--steps", "8", "--warmup", "2",
            "--device-budget", "2,4", "--eval-every", "4", "--eval-states", "1", "--no-progress", "--out", str(run)]
    assert main(argv + ["--action-decoding", "within-budgets"]) == 0
    assert json.loads((run / "result.json").read_text())["steps_done"] == 8
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 2  # made with the other decoding: another problem, not resumed
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "problem" in err
    assert main(argv + ["--action-decoding", "clip"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--action-decoding" in err and "Traceback" not in err


def test_evaluate_under_server_steps_learns_t0_only_and_reports_its_ceiling(tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["denoise", "evaluate", "--generator", "render", "--cache", str(tmp_path / "cache"), "--devices", "2",
            "--t0-grid", "0,2", "--tk-grid", "2,4", "--noise-seeds", "1", "--device-budget", "2,4",
            "--action-decoding", "server-steps", "--policy", "gddpg", "random", "local", "optimum", "--seeds", "2",
            "--train-steps", "8", "--warmup", "2", "--eval-every", "4", "--eval-states", "1", "--states", "3",
            "--runs", str(tmp_path / "runs"), "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["constants"]["action_decoding"] == "server-steps"
    reachable = result["best_reachable"]["fraction_of_optimum"]
    assert 0 < reachable <= 1 + 1e-9
    for name in ("gddpg", "random", "local"):
        assert result["policies"][name]["fraction_of_optimum"]["max"] <= reachable + 1e-9
        for decisions in result["policies"][name]["decisions"]:
            for d in decisions:  # every device at the most steps its budget allows (budgets 2, 4 sit on the grid)
                assert d["tk"] == d["device_budget"]


def test_the_command_line_offers_every_decoding_and_qoe_mode_the_problem_knows():
    """The CLI lists the choices itself (it imports the problem lazily); they must stay the problem's."""
    from incentive.cli import build_parser
    from provisioning.denoising.problem import ACTION_DECODINGS, QOE_OF_ALLOCATION

    parser = build_parser(["denoise", "evaluate"])
    denoise = next(a for a in parser._subparsers._group_actions[0].choices["denoise"]._subparsers._group_actions)
    evaluate = denoise.choices["evaluate"]
    options = {a.dest: a.choices for a in evaluate._actions}
    assert tuple(options["action_decoding"]) == ACTION_DECODINGS
    assert tuple(options["qoe"]) == QOE_OF_ALLOCATION
