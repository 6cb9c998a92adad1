"""Calibration: sweep steps, trials, BER and model size; write ASP profiles and quality tables.

What this module is for: turn measurements into the inputs of the other layers, with one
measurement (:func:`provisioning.backend.measurement.measure_groups`) and one profile function
(:func:`asp_profile`), used by ``incentive backend calibrate`` and ``incentive run --calibrate``
alike (same configuration and seed, same profiles: the accuracies are identical, the timings
are re-measured).

Every model :func:`provisioning.backend.measurement.load_measured_model` loads is calibrated the
same way: the digits models (request ``i`` asks for digit ``i mod 10``, the scorer picks the best
trial, the judge decides) and the scene models (request ``i`` asks for prompt ``i mod 20`` of a
seeded workload of fully specified prompts, the judge picks the best trial by the prompt's
attributes and decides whether the kept image matches the whole intent: the intent-match rate),
also as configurations at other default steps (``scenes-large@10``).

* **ASP profiles** for the market (``market.scenario`` format): per model, its
  ``accuracy`` (judge accuracy at the model's default steps, one trial, perfect link),
  ``seconds_per_token`` (compute seconds per generated token on this machine at one full
  core: process CPU time on the CPU, synchronised wall-clock time on CUDA, i.e. at unit
  compute share; requests batched as a server batches them), ``max_tokens`` (tokens of one
  image) and ``bits_per_output``. Capacities and unit costs are not measurable here: they come
  from a base scenario (ASPs matched by their ``model`` field) or from the documented defaults
  of :data:`DEFAULT_ASP_ECONOMICS`.
* **Best-of-N accuracy tables** for the market's trials (``accuracy[trials][ber]`` at the
  default steps): the accuracy a user receives with ``N`` trials over a link at a given BER,
  measured, read back by the pipeline through :func:`best_of_n_accuracy`.
* **Quality tables** for provisioning (``provisioning.quality.InterpolatedQualityModel``):
  per model and prompt (digit or workload prompt), the mean and std of the log score (the
  selection score: the digits scorer's probability, the scene judge's) of one trial at
  BER 0, and the BER sensitivity (least-squares slope of the mean log score against BER,
  sign flipped); prompts are ordered by difficulty ``1 - mean score``.
* **Plots**: accuracy vs steps per model, accuracy vs BER (per model and trials), latency
  vs steps.

The calibrated scenario carries all three in its ``[backend.calibrated.<model>]`` tables
(:func:`apply_calibration`), so a calibrated scenario is self-contained; :func:`read_calibration`
reads them back and :func:`calibration_status` says whether a scenario's ASPs are the measured
ones.

Every measurement is appended to ``measurements.jsonl`` as it finishes; a re-run with the
same settings skips those already there (resume after Ctrl-C).

May import: numpy, torch, diffusers, matplotlib (plots), ``market`` (scenario format,
errors, atomic IO).
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from market.atomic import atomic_write_png
from market.errors import ScenarioError, UserError

from .models import MODEL_NAMES

#: Capacities and unit costs of a calibrated ASP when no base scenario gives them
#: (compute units, Hz, money per compute unit, money per Hz). Not measured: economics.
DEFAULT_ASP_ECONOMICS: dict[str, float] = {
    "compute_capacity": 10.0, "bandwidth_capacity": 2.0e7, "compute_cost": 0.05, "bandwidth_cost": 2.0e-8,
}
#: Relative tolerance under which a scenario's ASP figures count as the calibrated ones.
CALIBRATED_RTOL = 1e-6


@dataclass
class CalibrateConfig:
    """What ``calibrate`` sweeps (saved as ``config.json`` next to the results)."""

    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES))
    """Models: shipped digits or scene names, optionally ``NAME@STEPS``, or folders of shipped-layout
    models (``measurement.load_measured_model``)."""
    steps_grid: list[int] = field(default_factory=lambda: [2, 5, 10, 20])
    """DDIM steps swept at one trial (each model's default steps are added)."""
    trials_grid: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 8])
    """Best-of-N trials swept at each model's default steps (1 is always added)."""
    ber_grid: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.003, 0.01, 0.03, 0.1])
    """Bit error rates (applied to the same generated images; 0 is always added)."""
    samples: int = 150
    """Requests per measurement (``incentive run --calibrate`` uses the same default)."""
    seed: int = 0
    """Run seed (the point (model, steps, trials) uses ``derive_seed(seed, crc32(model), steps, trials)``)."""
    link_rate_bps: float | None = None
    """Link rate for transmission time in the rows (``None``: not counted)."""
    base_scenario: str | None = None
    """Scenario whose ASPs (matched by ``model``) get the measured profile; ``None``: a built-in one."""


def _key(row: dict) -> tuple:
    c = row["config"]
    return (c["model"], int(c["steps"]), int(c["trials"]), float(c["ber"]))


def _group_seed(seed: int, model: str, steps: int, trials: int) -> int:
    """Seed of one calibration point: independent of the grids and of which other models are
    calibrated (so ``backend calibrate`` and ``run --calibrate`` measure the same requests)."""
    from market.seeding import derive_seed

    return derive_seed(seed, zlib.crc32(str(model).encode()), steps, trials, bits=32)


def run_sweep(config: CalibrateConfig, out_dir: Path, log=print, loaded: dict | None = None,
              evaluator=None) -> list[dict]:
    """Measure every (model, steps, trials) with all BERs; append to ``measurements.jsonl``; resume.

    One :func:`measure_groups` call per (model, steps): at the default steps the groups are the
    trials grid, at other steps one trial. ``loaded`` maps model names to loaded models (else
    they are loaded here).
    """
    from .measurement import MeasureConfig, RequestGroup, load_measured_model, measure_groups, measure_result

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "measurements.jsonl"
    rows: list[dict] = []
    if store.is_file():
        for line in store.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a torn last line after a kill: drop it, it is re-measured
    want = (config.samples, config.seed, config.link_rate_bps)
    rows = [r for r in rows if (r["config"]["samples"], r["config"]["seed"], r["config"]["link_rate_bps"]) == want]
    done = {_key(r) for r in rows}
    # rewrite the kept rows so a torn line never stays in the file
    from market.atomic import atomic_write_text

    atomic_write_text(store, "".join(json.dumps(r) + "\n" for r in rows))
    bers = [float(b) for b in config.ber_grid]
    for name in config.models:
        model = (loaded or {}).get(name) or load_measured_model(name)
        for steps in sorted(set(int(s) for s in config.steps_grid) | {model.default_steps}):
            trials_grid = sorted(set(int(t) for t in config.trials_grid)) if steps == model.default_steps else [1]
            todo = [t for t in trials_grid if not all((name, steps, t, b) in done for b in bers)]
            if not todo:
                continue
            groups = [RequestGroup(trials=t, samples=config.samples, seed=_group_seed(config.seed, name, steps, t),
                                   bers=tuple(bers)) for t in todo]
            measured = measure_groups(model, groups, steps=steps, evaluator=evaluator)
            with store.open("a") as handle:
                for t, meas in zip(todo, measured):
                    cfg = MeasureConfig(model=name, steps=steps, trials=t, samples=config.samples, seed=config.seed,
                                        guidance_scale=model.guidance_scale, link_rate_bps=config.link_rate_bps)
                    for b in range(len(bers)):
                        row = measure_result(meas, cfg, b).to_dict(per_request=True)
                        row["default_steps"] = model.default_steps
                        row["bits_per_output"] = meas.bits_per_output
                        row["score"] = _score_description(model)
                        rows.append(row)
                        handle.write(json.dumps(row) + "\n")
                    log(f"{name} steps={steps} trials={t}: accuracy "
                        + ", ".join(f"ber {b:g}: {o.accuracy:.2f}" for b, o in zip(bers, meas.outcomes))
                        + f"; {meas.seconds_per_token * 1e3:.3f} ms per token")
                handle.flush()
    return rows


def _score_description(model) -> str:
    """What a model's per-request ``quality`` is (the selection score the quality tables hold)."""
    evaluator = getattr(model, "evaluator", None)
    return getattr(evaluator, "score_description", "scorer probability of the requested digit")


def asp_profile(row: dict) -> dict:
    """The ASP profile of one measurement row (default steps, one trial, BER 0): the one
    definition of ``accuracy``, ``seconds_per_token``, ``max_tokens`` and ``bits_per_output``."""
    c = row["config"]
    return {
        "accuracy": row["accuracy"], "accuracy_ci95": list(row["accuracy_ci95"]),
        # CPU: the work per token at one full core (process CPU time), robust to other jobs
        # on a shared machine; CUDA: wall-clock (synchronised) seconds per token.
        "seconds_per_token": row["cpu_seconds_per_token"] or row["seconds_per_token"],
        "wall_seconds_per_token": row["seconds_per_token"], "max_tokens": row["tokens"],
        "bits_per_output": int(row.get("bits_per_output") or row["bits"] // c["trials"]),
        "steps": c["steps"], "device": row["device"], "samples": c["samples"], "seed": c["seed"],
    }


def asp_profiles(rows: list[dict]) -> dict[str, dict]:
    """Per model: :func:`asp_profile` of its (default steps, 1 trial, BER 0) row."""
    return {r["config"]["model"]: asp_profile(r) for r in rows
            if r["config"]["trials"] == 1 and r["config"]["ber"] == 0.0 and r["config"]["steps"] == r["default_steps"]}


def accuracy_tables(rows: list[dict]) -> dict[str, dict]:
    """Per model, the measured best-of-N accuracy at its default steps: ``accuracy[i][j]`` at
    ``trials[i]`` and ``ber[j]`` (with ``samples`` requests each)."""
    out = {}
    for name in sorted({r["config"]["model"] for r in rows}):
        sel = [r for r in rows if r["config"]["model"] == name and r["config"]["steps"] == r["default_steps"]]
        trials = sorted({int(r["config"]["trials"]) for r in sel})
        bers = sorted({float(r["config"]["ber"]) for r in sel})
        cell = {(int(r["config"]["trials"]), float(r["config"]["ber"])): r["accuracy"] for r in sel}
        if not all((t, b) in cell for t in trials for b in bers):
            continue
        out[name] = {"trials": trials, "ber": bers, "accuracy": [[cell[(t, b)] for b in bers] for t in trials],
                     "samples": int(sel[0]["config"]["samples"])}
    return out


def best_of_n_accuracy(table: dict, trials, ber) -> np.ndarray:
    """Accuracy received with ``trials`` over a link at ``ber``, from an accuracy table.

    Piecewise-linear in BER and in trials between the measured points, flat outside them.
    """
    t_grid = np.asarray(table["trials"], dtype=float)
    b_grid = np.asarray(table["ber"], dtype=float)
    acc = np.asarray(table["accuracy"], dtype=float)
    trials = np.atleast_1d(np.asarray(trials, dtype=float))
    ber = np.broadcast_to(np.atleast_1d(np.asarray(ber, dtype=float)), trials.shape)
    by_trials = np.array([[np.interp(b, b_grid, row) for row in acc] for b in ber])  # (M, T)
    return np.array([np.interp(t, t_grid, col) for t, col in zip(trials, by_trials)])


def quality_tables(rows: list[dict]) -> dict[str, dict]:
    """Per model, prompts ordered by difficulty with log-score statistics and BER sensitivity."""
    out = {}
    models = sorted({r["config"]["model"] for r in rows})
    for name in models:
        sel = [r for r in rows if r["config"]["model"] == name and r["config"]["trials"] == 1
               and r["config"]["steps"] == r["default_steps"]]
        if not sel:
            continue
        bers = sorted({r["config"]["ber"] for r in sel})
        by_ber = {r["config"]["ber"]: r for r in sel}
        base = by_ber[bers[0]]
        labels = np.asarray(base["per_request"]["label"])
        prompts = []
        for digit in sorted(set(labels.tolist())):
            mask = labels == digit
            logs = {b: np.log(np.clip(np.asarray(by_ber[b]["per_request"]["quality"])[mask], 1e-6, 1.0)) for b in bers}
            means = np.array([logs[b].mean() for b in bers])
            slope = float(np.polyfit(bers, means, 1)[0]) if len(bers) > 1 else 0.0
            q0 = np.exp(logs[bers[0]])
            prompts.append({
                "prompt": int(digit), "difficulty": float(1.0 - q0.mean()),
                "mean_log_score": float(logs[bers[0]].mean()), "std_log_score": float(logs[bers[0]].std()),
                "ber_sensitivity": float(max(0.0, -slope)), "samples": int(mask.sum()),
            })
        prompts.sort(key=lambda p: p["difficulty"])
        for i in range(1, len(prompts)):  # strictly increasing for interpolation
            if prompts[i]["difficulty"] <= prompts[i - 1]["difficulty"]:
                prompts[i]["difficulty"] = prompts[i - 1]["difficulty"] + 1e-9
        out[name] = {
            "steps": base["config"]["steps"], "ber_grid": bers,
            "score": base.get("score", "scorer probability of the requested digit"),
            "prompts": [p["prompt"] for p in prompts],
            "difficulty": [p["difficulty"] for p in prompts],
            "mean_log_score": [p["mean_log_score"] for p in prompts],
            "std_log_score": [p["std_log_score"] for p in prompts],
            "ber_sensitivity": [p["ber_sensitivity"] for p in prompts],
            "samples_per_prompt": [p["samples"] for p in prompts],
        }
    return out


def _builtin_scenario(profiles: dict[str, dict]) -> dict:
    """A small valid market in the backend's units: one ASP per calibrated model, two MUs per ASP
    asking for one full output with a deadline of a few generations."""
    asps, mus = [], []
    for i, (name, prof) in enumerate(profiles.items()):
        asp_name = f"asp-{name}"
        asps.append({"name": asp_name, "model": name, "accuracy": float(prof["accuracy"]),
                     "seconds_per_token": float(prof["seconds_per_token"]),
                     "max_tokens": float(prof["max_tokens"]), **DEFAULT_ASP_ECONOMICS})
        one = float(prof["seconds_per_token"]) * float(prof["max_tokens"])
        for j, (wa, wl, wt) in enumerate(((0.5, 0.2, 0.3), (0.3, 0.2, 0.5))):
            mus.append({"name": f"mu-{i}-{j}", "asp": asp_name,
                        "weights": {"accuracy": wa, "tokens": wl, "timeliness": wt},
                        "tokens_requested": float(prof["max_tokens"]), "deadline_s": float(max(10.0 * one, 1e-3)),
                        "payload_bits": float(prof["bits_per_output"]), "value_per_qoe": 10.0, "reward_min": 0.1,
                        "reward_max": 10.0, "spectral_efficiency": 2.0 + j})
    return {"market": {"version": 1, "name": "calibrated-backend",
                       "description": "ASPs calibrated from measured diffusion backends"},
            "asp": asps, "mu": mus}


def apply_calibration(data: dict, profiles: dict[str, dict], accuracy: dict | None = None,
                      quality: dict | None = None, provenance: dict | None = None) -> int:
    """Put measured profiles and tables into a scenario document (``Scenario.to_dict()`` form).

    Every ASP whose ``model`` is calibrated gets the measured ``accuracy``, ``seconds_per_token``
    and ``max_tokens``; every MU served by such an ASP gets ``payload_bits`` = the bits of one
    output of its model (an ``"auto"`` MU when every calibrated model has the same output size);
    the ``[backend.calibrated.<model>]`` tables carry the profile, the best-of-N accuracy table
    and the quality table. Returns the number of ASPs matched.
    """
    matched = 0
    model_of = {}
    for asp in data["asp"]:
        prof = profiles.get(asp.get("model") or "")
        if prof:
            asp["accuracy"] = float(min(max(prof["accuracy"], 0.0), 1.0))
            asp["seconds_per_token"] = float(max(prof["seconds_per_token"], 1e-12))
            asp["max_tokens"] = float(prof["max_tokens"])
            model_of[asp["name"]] = asp["model"]
            matched += 1
    sizes = {int(p["bits_per_output"]) for p in profiles.values()}
    for mu in data["mu"]:
        name = model_of.get(mu.get("asp"))
        if name is not None:
            mu["payload_bits"] = float(profiles[name]["bits_per_output"])
        elif mu.get("asp") == "auto" and len(sizes) == 1:
            mu["payload_bits"] = float(next(iter(sizes)))
    tables = {}
    for name, prof in profiles.items():
        entry = {k: v for k, v in prof.items() if v is not None}
        if accuracy and name in accuracy:
            entry["accuracy_table"] = accuracy[name]
        if quality and name in quality:
            entry["quality"] = {k: quality[name][k] for k in ("prompts", "difficulty", "mean_log_score",
                                                              "std_log_score", "ber_sensitivity")}
        tables[name] = entry
    backend = dict(data.get("backend") or {})
    backend["calibrated"] = tables
    backend.update(provenance or {})
    data["backend"] = backend
    return matched


def write_calibrated_scenario(profiles: dict[str, dict], out_path: Path, base_scenario: str | None = None,
                              provenance: dict | None = None, accuracy: dict | None = None,
                              quality: dict | None = None) -> Path:
    """Write a market scenario whose ASPs are the measured ones (:func:`apply_calibration`).

    With ``base_scenario``, every ASP whose ``model`` is a calibrated model gets the measured
    values and the rest is kept; without, :func:`_builtin_scenario` is used. Validated by
    ``market.scenario`` before writing.
    """
    from market.scenario import Scenario, load_scenario, write_scenario

    data = load_scenario(base_scenario).to_dict() if base_scenario else _builtin_scenario(profiles)
    if not apply_calibration(data, profiles, accuracy, quality, provenance):
        raise UserError(f"{base_scenario}: no [[asp]] has a `model` among the calibrated ones "
                        f"({', '.join(profiles)})")
    scenario = Scenario.from_dict(data, file=str(out_path))
    return write_scenario(scenario, out_path)


@dataclass(frozen=True)
class CalibratedModel:
    """One model's calibration, as a calibrated scenario carries it.

    Attributes
    ----------
    profile : dict
        :func:`asp_profile`'s fields.
    accuracy_table : dict or None
        Best-of-N accuracy (``trials``, ``ber``, ``accuracy``), see :func:`best_of_n_accuracy`.
    quality : dict or None
        Per-prompt ``difficulty``, ``mean_log_score``, ``std_log_score``, ``ber_sensitivity``
        (natural log of the scorer probability), for ``provisioning.quality.InterpolatedQualityModel``.
    """

    profile: dict
    accuracy_table: dict | None
    quality: dict | None


def _check_table(table, where: str, file: str, keys: tuple) -> dict:
    if not isinstance(table, dict):
        raise ScenarioError("must be a table", file=file, field=where)
    for key in keys:
        value = table.get(key)
        if not isinstance(value, list) or not value:
            raise ScenarioError("must be a non-empty list", file=file, field=f"{where}.{key}")
        flat = [x for item in value for x in (item if isinstance(item, list) else [item])]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in flat):
            raise ScenarioError("must hold finite numbers", file=file, field=f"{where}.{key}")
    return table


def read_calibration(scenario) -> dict[str, CalibratedModel]:
    """The ``[backend.calibrated.<model>]`` tables of a scenario, checked (empty when none).

    Raises
    ------
    ScenarioError
        Naming the scenario file and the ``backend.calibrated.*`` field.
    """
    backend = scenario.extra_tables.get("backend") or {}
    calibrated = backend.get("calibrated") or {}
    file = str(scenario.file)
    if not isinstance(calibrated, dict):
        raise ScenarioError("must be a table of models", file=file, field="backend.calibrated")
    out = {}
    for name, entry in calibrated.items():
        where = f"backend.calibrated.{name}"
        if not isinstance(entry, dict):
            raise ScenarioError("must be a table", file=file, field=where)
        for key in ("accuracy", "seconds_per_token", "max_tokens", "bits_per_output"):
            value = entry.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ScenarioError("must be a finite number >= 0", file=file, field=f"{where}.{key}")
        acc = entry.get("accuracy_table")
        if acc is not None:
            _check_table(acc, f"{where}.accuracy_table", file, ("trials", "ber", "accuracy"))
            if len(acc["accuracy"]) != len(acc["trials"]) or any(
                    not isinstance(row, list) or len(row) != len(acc["ber"]) for row in acc["accuracy"]):
                raise ScenarioError("must have one row per trials value and one column per BER", file=file,
                                    field=f"{where}.accuracy_table.accuracy")
        quality = entry.get("quality")
        if quality is not None:
            _check_table(quality, f"{where}.quality", file, ("difficulty", "mean_log_score", "std_log_score",
                                                             "ber_sensitivity"))
        profile = {k: v for k, v in entry.items() if k not in ("accuracy_table", "quality")}
        out[name] = CalibratedModel(profile=profile, accuracy_table=acc, quality=quality)
    return out


def calibration_status(scenario, served_models: dict[str, str]) -> list[str]:
    """Why a scenario is not the backend's measured world (empty list: it is).

    ``served_models`` maps each ASP that serves MUs to its model. A scenario is calibrated when
    each of those models has a ``[backend.calibrated]`` entry with an accuracy table and each
    such ASP's ``accuracy``, ``seconds_per_token`` and ``max_tokens`` equal the entry's.
    """
    calibration = read_calibration(scenario)
    reasons = []
    by_name = {a.name: a for a in scenario.asps}
    for asp_name, model in served_models.items():
        entry = calibration.get(model)
        if entry is None:
            reasons.append(f"{asp_name}: no measured profile of {model}")
            continue
        if entry.accuracy_table is None:
            reasons.append(f"{asp_name}: no best-of-N accuracy table for {model}")
        asp = by_name[asp_name]
        for key in ("accuracy", "seconds_per_token", "max_tokens"):
            if not math.isclose(float(getattr(asp, key)), float(entry.profile[key]), rel_tol=CALIBRATED_RTOL):
                reasons.append(f"{asp_name}: {key} {getattr(asp, key):g} is not the measured {entry.profile[key]:g}")
    return reasons


def plot_calibration(rows: list[dict], out_dir: Path) -> list[Path]:
    """Accuracy vs steps, accuracy vs BER, latency vs steps (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    models = [m for m in MODEL_NAMES if any(r["config"]["model"] == m for r in rows)]
    models += sorted({r["config"]["model"] for r in rows} - set(models))
    files = []

    def select(model, **kw):
        return [r for r in rows if r["config"]["model"] == model and all(r["config"][k] == v for k, v in kw.items())]

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        sel = sorted(select(m, trials=1, ber=0.0), key=lambda r: r["config"]["steps"])
        x = [r["config"]["steps"] for r in sel]
        y = [r["accuracy"] for r in sel]
        lo = [r["accuracy"] - r["accuracy_ci95"][0] for r in sel]
        hi = [r["accuracy_ci95"][1] - r["accuracy"] for r in sel]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=m)
    ax.set_xlabel("DDIM denoising steps")
    ax.set_ylabel("accuracy (judge, 95% Wilson CI)")
    ax.set_title("accuracy vs steps (1 trial, perfect link)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    files.append(out_dir / "accuracy_vs_steps.png")
    atomic_write_png(files[-1], fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        trials = sorted({r["config"]["trials"] for r in select(m)})
        for t in trials:
            sel = [r for r in select(m, trials=t) if r["config"]["steps"] == r["default_steps"]]
            sel.sort(key=lambda r: r["config"]["ber"])
            if sel:
                ax.plot([max(r["config"]["ber"], 1e-4) for r in sel], [r["accuracy"] for r in sel], marker="o",
                        linestyle="-" if t == 1 else "--", label=f"{m}, N={t}")
    ax.set_xscale("log")
    ax.set_xlabel("bit error rate (0 drawn at 1e-4)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs BER (default steps, best-of-N)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(out_dir / "accuracy_vs_ber.png")
    atomic_write_png(files[-1], fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in models:
        for t in sorted({r["config"]["trials"] for r in select(m)}):
            sel = sorted(select(m, trials=t, ber=0.0), key=lambda r: r["config"]["steps"])
            x = [r["config"]["steps"] for r in sel]
            y = [r["latency_s"] * 1e3 for r in sel]
            lo = [(r["latency_s"] - r["latency_ci95"][0]) * 1e3 for r in sel]
            hi = [(r["latency_ci95"][1] - r["latency_s"]) * 1e3 for r in sel]
            ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=2,
                        linestyle="-" if t == 1 else "--", label=f"{m}, N={t}")
    device = rows[0]["device"] if rows else "?"
    ax.set_xlabel("DDIM denoising steps")
    ax.set_ylabel("latency per request (ms)")
    ax.set_title(f"latency vs steps ({device})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(out_dir / "latency_vs_steps.png")
    atomic_write_png(files[-1], fig)
    return files


def check_config(config: CalibrateConfig) -> CalibrateConfig:
    """Validate the grids (:class:`UserError` naming the option); add BER 0 and one trial."""
    for name, values in (("steps_grid", config.steps_grid), ("trials_grid", config.trials_grid)):
        if not values or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64 for v in values):
            raise UserError(f"calibrate: {name} must be integers in 1..64, got {values!r}")
    if not config.ber_grid or any(not (isinstance(b, (int, float)) and math.isfinite(b) and 0 <= b <= 1)
                                  for b in config.ber_grid):
        raise UserError(f"calibrate: ber_grid must be numbers in [0, 1], got {config.ber_grid!r}")
    if isinstance(config.samples, bool) or not isinstance(config.samples, int) or config.samples < 1:
        raise UserError(f"calibrate: samples must be an integer >= 1, got {config.samples!r}")
    out = CalibrateConfig(**asdict(config))
    out.ber_grid = sorted(set(float(b) for b in config.ber_grid) | {0.0})
    out.trials_grid = sorted(set(int(t) for t in config.trials_grid) | {1})
    return out


def calibrate(config: CalibrateConfig, out_dir: str | Path, log=print, loaded: dict | None = None,
              evaluator=None, plots: bool = True) -> dict:
    """Sweep, then write ``profiles.json``, ``quality.json``, ``accuracy.json``, ``scenario.toml``,
    plots and ``config.json`` (``incentive backend calibrate`` and ``incentive run --calibrate``).

    Returns
    -------
    dict
        ``{"profiles": ..., "accuracy": ..., "quality": ..., "scenario": path, "files": [...]}``.
    """
    from market.atomic import atomic_write_json

    config = check_config(config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "config.json", asdict(config))
    rows = run_sweep(config, out_dir, log=log, loaded=loaded, evaluator=evaluator)
    wanted = set(config.models)
    rows = [r for r in rows if r["config"]["model"] in wanted]
    profiles, accuracy, quality = asp_profiles(rows), accuracy_tables(rows), quality_tables(rows)
    atomic_write_json(out_dir / "profiles.json", profiles)
    atomic_write_json(out_dir / "accuracy.json", accuracy)
    atomic_write_json(out_dir / "quality.json", quality)
    scenario = write_calibrated_scenario(profiles, out_dir / "scenario.toml", config.base_scenario,
                                         provenance={"samples": config.samples, "seed": config.seed},
                                         accuracy=accuracy, quality=quality)
    files = [out_dir / "config.json", out_dir / "measurements.jsonl", out_dir / "profiles.json",
             out_dir / "accuracy.json", out_dir / "quality.json", scenario]
    if plots:
        files += plot_calibration(rows, out_dir)
    return {"profiles": profiles, "accuracy": accuracy, "quality": quality, "scenario": str(scenario),
            "files": [str(f) for f in files]}
