"""Calibration: sweep steps, trials, BER and model size; write ASP profiles and quality tables.

What this module is for: turn measurements into the inputs of the other layers.

* **ASP profiles** for the market (``market.scenario`` format): per shipped model, its
  ``accuracy`` (judge accuracy at the model's default steps, one trial, perfect link),
  ``seconds_per_token`` (measured compute seconds per output token of one request on this
  machine at one full core: process CPU time on the CPU, synchronised wall-clock time on
  CUDA, i.e. at unit compute share) and ``max_tokens`` (tokens of one image). Capacities
  and unit costs are not measurable here: they come from a base scenario (ASPs matched by
  their ``model`` field) or from the documented defaults of :data:`DEFAULT_ASP_ECONOMICS`.
* **Quality tables** for provisioning (``provisioning.quality.InterpolatedQualityModel``):
  per model and prompt (digit), the mean and std of the log scorer score of one trial at
  BER 0, and the BER sensitivity (least-squares slope of the mean log score against BER,
  sign flipped); prompts are ordered by difficulty ``1 - mean score``.
* **Plots**: accuracy vs steps per model, accuracy vs BER (per model and trials), latency
  vs steps.

Every measurement is appended to ``measurements.jsonl`` as it finishes; a re-run with the
same settings skips those already there (resume after Ctrl-C).

May import: numpy, torch, diffusers, matplotlib (plots), ``market`` (scenario format,
errors, atomic IO).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from market.errors import UserError

from .models import MODEL_NAMES

#: Capacities and unit costs of a calibrated ASP when no base scenario gives them
#: (compute units, Hz, money per compute unit, money per Hz). Not measured: economics.
DEFAULT_ASP_ECONOMICS: dict[str, float] = {
    "compute_capacity": 10.0, "bandwidth_capacity": 2.0e7, "compute_cost": 0.05, "bandwidth_cost": 2.0e-8,
}


@dataclass
class CalibrateConfig:
    """What ``calibrate`` sweeps (saved as ``config.json`` next to the results)."""

    models: list[str] = field(default_factory=lambda: list(MODEL_NAMES))
    """Models (shipped names or folders of shipped-layout models)."""
    steps_grid: list[int] = field(default_factory=lambda: [2, 5, 10, 20])
    """DDIM steps swept (each model's default steps are added)."""
    trials_grid: list[int] = field(default_factory=lambda: [1, 2, 4])
    """Best-of-N trials swept."""
    ber_grid: list[float] = field(default_factory=lambda: [0.0, 0.001, 0.01, 0.03, 0.1])
    """Bit error rates (applied to the same generated images)."""
    samples: int = 50
    """Requests per measurement."""
    seed: int = 0
    """Run seed."""
    link_rate_bps: float | None = None
    """Link rate for transmission time (``None``: not counted)."""
    base_scenario: str | None = None
    """Scenario whose ASPs (matched by ``model``) get the measured profile; ``None``: a built-in one."""


def _key(row: dict) -> tuple:
    c = row["config"]
    return (c["model"], int(c["steps"]), int(c["trials"]), float(c["ber"]))


def run_sweep(config: CalibrateConfig, out_dir: Path, log=print) -> list[dict]:
    """Measure every (model, steps, trials) with all BERs; append to ``measurements.jsonl``; resume."""
    from .measurement import MeasureConfig, measure
    from .models import load_model

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
    want_samples = (config.samples, config.seed, config.link_rate_bps)
    rows = [r for r in rows if (r["config"]["samples"], r["config"]["seed"], r["config"]["link_rate_bps"]) == want_samples]
    done = {_key(r) for r in rows}
    # rewrite the kept rows so a torn line never stays in the file
    from market.atomic import atomic_write_text

    atomic_write_text(store, "".join(json.dumps(r) + "\n" for r in rows))
    for name in config.models:
        model = load_model(name)
        steps_grid = sorted(set(int(s) for s in config.steps_grid) | {model.default_steps})
        for steps in steps_grid:
            for trials in config.trials_grid:
                if all((name, steps, int(trials), float(b)) in done for b in config.ber_grid):
                    continue
                results = measure(model, MeasureConfig(model=name, steps=steps, trials=int(trials),
                                                       samples=config.samples, seed=config.seed,
                                                       link_rate_bps=config.link_rate_bps),
                                  bers=list(config.ber_grid))
                with store.open("a") as handle:
                    for res in results:
                        row = res.to_dict(per_request=True)
                        row["default_steps"] = model.default_steps
                        rows.append(row)
                        handle.write(json.dumps(row) + "\n")
                    handle.flush()
                log(f"{name} steps={steps} trials={trials}: accuracy "
                    + ", ".join(f"ber {r.config['ber']:g}: {r.accuracy:.2f}" for r in results)
                    + f"; latency {results[0].latency_s * 1e3:.1f} ms")
    return rows


def asp_profiles(rows: list[dict]) -> dict[str, dict]:
    """Per model: accuracy (default steps, 1 trial, BER 0), seconds_per_token, max_tokens, CIs."""
    out = {}
    for row in rows:
        c = row["config"]
        if c["trials"] == 1 and c["ber"] == 0.0 and c["steps"] == row["default_steps"]:
            out[c["model"]] = {
                "accuracy": row["accuracy"], "accuracy_ci95": row["accuracy_ci95"],
                # CPU: the work per token at one full core (process CPU time), robust to other jobs
                # on a shared machine; CUDA: wall-clock (synchronised) seconds per token.
                "seconds_per_token": row["cpu_seconds_per_token"] or row["seconds_per_token"],
                "wall_seconds_per_token": row["seconds_per_token"], "max_tokens": row["tokens"],
                "latency_s": row["latency_s"], "steps": c["steps"], "device": row["device"],
                "samples": c["samples"],
            }
    return out


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
            "steps": base["config"]["steps"], "ber_grid": bers, "score": "scorer probability of the requested digit",
            "prompts": [p["prompt"] for p in prompts],
            "difficulty": [p["difficulty"] for p in prompts],
            "mean_log_score": [p["mean_log_score"] for p in prompts],
            "std_log_score": [p["std_log_score"] for p in prompts],
            "ber_sensitivity": [p["ber_sensitivity"] for p in prompts],
            "samples_per_prompt": [p["samples"] for p in prompts],
        }
    return out


def _builtin_scenario(profiles: dict[str, dict]) -> dict:
    """A small valid market: one ASP per calibrated model, two MUs per ASP."""
    asps, mus = [], []
    for i, (name, prof) in enumerate(profiles.items()):
        asp_name = f"asp-{name}"
        asps.append({"name": asp_name, "model": name, "accuracy": float(prof["accuracy"]),
                     "seconds_per_token": float(prof["seconds_per_token"]),
                     "max_tokens": float(prof["max_tokens"]), **DEFAULT_ASP_ECONOMICS})
        for j, (wa, wl, wt) in enumerate(((0.5, 0.2, 0.3), (0.3, 0.2, 0.5))):
            mus.append({"name": f"mu-{i}-{j}", "asp": asp_name,
                        "weights": {"accuracy": wa, "tokens": wl, "timeliness": wt},
                        "tokens_requested": float(prof["max_tokens"]), "deadline_s": 1.0,
                        "payload_bits": 2048.0, "value_per_qoe": 10.0, "reward_min": 0.1,
                        "reward_max": 10.0, "spectral_efficiency": 2.0 + j})
    return {"market": {"version": 1, "name": "calibrated-backend",
                       "description": "ASPs calibrated from measured diffusion backends"},
            "asp": asps, "mu": mus}


def write_calibrated_scenario(profiles: dict[str, dict], out_path: Path, base_scenario: str | None = None,
                              provenance: dict | None = None) -> Path:
    """Write a market scenario whose ASP accuracy / seconds_per_token / max_tokens are measured.

    With ``base_scenario``, every ASP whose ``model`` is a calibrated model gets the measured
    values and the rest is kept; without, :func:`_builtin_scenario` is used. Validated by
    ``market.scenario`` before writing.
    """
    from market.scenario import Scenario, load_scenario, write_scenario

    if base_scenario:
        base = load_scenario(base_scenario).to_dict()
        matched = 0
        for asp in base["asp"]:
            prof = profiles.get(asp.get("model") or "")
            if prof:
                asp["accuracy"] = float(prof["accuracy"])
                asp["seconds_per_token"] = float(prof["seconds_per_token"])
                asp["max_tokens"] = float(prof["max_tokens"])
                matched += 1
        if not matched:
            raise UserError(f"{base_scenario}: no [[asp]] has a `model` among the calibrated ones "
                            f"({', '.join(profiles)})")
        data = base
    else:
        data = _builtin_scenario(profiles)
    data["backend"] = {"calibrated": {k: {kk: vv for kk, vv in v.items() if kk != "accuracy_ci95"}
                                      for k, v in profiles.items()}, **(provenance or {})}
    scenario = Scenario.from_dict(data, file=str(out_path))
    return write_scenario(scenario, out_path)


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
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)

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
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)

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
    fig.savefig(files[-1], dpi=100)
    plt.close(fig)
    return files


def calibrate(config: CalibrateConfig, out_dir: str | Path, log=print) -> dict:
    """Sweep, then write ``profiles.json``, ``quality.json``, ``scenario.toml``, plots, ``config.json``.

    Returns
    -------
    dict
        ``{"profiles": ..., "quality": ..., "files": [...]}``.
    """
    from market.atomic import atomic_write_json

    for name, values in (("steps_grid", config.steps_grid), ("trials_grid", config.trials_grid)):
        if not values or any(not isinstance(v, int) or v < 1 for v in values):
            raise UserError(f"calibrate: {name} must be positive integers, got {values!r}")
    if not config.ber_grid or any(not (isinstance(b, (int, float)) and math.isfinite(b) and 0 <= b <= 1)
                                  for b in config.ber_grid):
        raise UserError(f"calibrate: ber_grid must be numbers in [0, 1], got {config.ber_grid!r}")
    if 0.0 not in [float(b) for b in config.ber_grid]:
        config.ber_grid = [0.0, *config.ber_grid]
    if 1 not in config.trials_grid:
        config.trials_grid = [1, *config.trials_grid]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "config.json", asdict(config))
    rows = run_sweep(config, out_dir, log=log)
    wanted = set(config.models)
    rows = [r for r in rows if r["config"]["model"] in wanted]
    profiles = asp_profiles(rows)
    quality = quality_tables(rows)
    atomic_write_json(out_dir / "profiles.json", profiles)
    atomic_write_json(out_dir / "quality.json", quality)
    scenario = write_calibrated_scenario(profiles, out_dir / "scenario.toml", config.base_scenario,
                                         provenance={"samples": config.samples, "seed": config.seed})
    files = [out_dir / "config.json", out_dir / "measurements.jsonl", out_dir / "profiles.json",
             out_dir / "quality.json", scenario, *plot_calibration(rows, out_dir)]
    return {"profiles": profiles, "quality": quality, "files": [str(f) for f in files]}
