"""The mechanism study: comparison tables, sweeps and plots.

What this module is for: :func:`compare` runs every mechanism of
:mod:`solvers.mechanisms` on one market and computes the metrics and the percentage change
of the proposed mechanism against each alternative; :func:`write_comparison` writes the
table (CSV), the JSON and the plots (bar chart of the metrics per mechanism, reward
trajectories of the solver's rounds); :func:`run_sweep` runs a seeded grid (number of
MUs, capacity scale, spread of personal weights) in a process pool or on Ray, with a
checkpoint file so an interrupted sweep resumes, and :func:`plot_sweep` draws it.

Plots use matplotlib's non-interactive Agg backend. Every file is written atomically
(``market.atomic``); sweep rows are appended to ``rows.jsonl`` as they finish.

May import: everything (``incentive`` is the top layer); nothing imports it.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from market.atomic import (atomic_write_bytes, atomic_write_json, atomic_write_text, csv_text, headless_pyplot,
                           json_ready, png_bytes)
from market.errors import UserError
from market.model import Market
from solvers.mechanisms import MECHANISMS, METRICS, mechanism_metrics, percent_change, run_mechanisms

#: Metrics shown in the bar chart (the paper's three claims first).
HEADLINE = ("overhead_share", "payment_per_mu", "asp_resource_use", "qoe", "mu_utility", "welfare")
#: The paper's claimed reductions of the proposed mechanism (percent), for the report.
PAPER_CLAIMS = {"overhead_share": -64.9, "payment_per_mu": -66.5, "asp_resource_use": -76.8}


@dataclass
class Comparison:
    """Everything :func:`compare` found on one market."""

    market_name: str
    """Scenario name."""
    solver: str
    """Solver used for the equilibrium mechanisms."""
    metrics: dict
    """mechanism -> metric -> value (units in :data:`solvers.mechanisms.METRICS`)."""
    percent_vs: dict
    """alternative -> metric -> 100 (proposed - alternative) / |alternative|."""
    skipped: dict
    """mechanism -> why it does not apply to this market."""
    certificate: dict
    """The proposed equilibrium's certificate (JSON form) and status."""
    trajectory: dict = field(default_factory=dict)
    """Solver rounds: ``{"pyomo": [[rewards...] per round], "dual_perturbation_gain": [...]}``."""
    seconds: float = 0.0
    """Wall time of the comparison, s."""


def compare(market: Market, *, solver: str = "dual-perturbation", names=MECHANISMS,
            trajectory: bool = True) -> Comparison:
    """Run every mechanism on ``market``; metrics and percentage changes.

    Parameters
    ----------
    market : Market
    solver : registry name of the equilibrium solver.
    names : mechanisms to run (``"proposed"`` is always run).
    trajectory : also record the reward trajectory of the Pyomo Gauss-Seidel rounds
        (needs ipopt; skipped silently otherwise) and the default solver's per-round gains.
    """
    import solvers

    start = time.perf_counter()
    result = solvers.solve(market, solver)
    names = tuple(dict.fromkeys(("proposed",) + tuple(names)))
    outcomes, skipped = run_mechanisms(market, solver=solver, names=names, proposed_result=result)
    metrics = {name: mechanism_metrics(market, o) for name, o in outcomes.items()}
    base = metrics["proposed"]
    percent = {name: {k: percent_change(base[k], v[k]) for k in METRICS}
               for name, v in metrics.items() if name != "proposed"}
    cert = result.certificate.to_dict() if result.certificate is not None else {}
    cert["status"] = result.status
    traj: dict = {"dual_perturbation_gain": list(map(float, result.history)), "solver": result.solver}
    if result.options.get("trajectory"):  # a solver that records its rewards per round
        traj["default"] = result.options["trajectory"]
    if trajectory:
        from solvers.pyomo_reference import ipopt_unavailable_reason

        reason = ipopt_unavailable_reason()
        if reason is None:
            ref = solvers.solve(market, "pyomo", method="gauss-seidel")
            traj["pyomo"] = ref.options.get("trajectory", [])
            traj["pyomo_status"] = ref.status
        else:
            traj["pyomo_unavailable"] = reason
    statuses = {name: o.status for name, o in outcomes.items()}
    cert["mechanism_status"] = statuses
    return Comparison(market_name=market.name, solver=result.solver, metrics=metrics, percent_vs=percent,
                      skipped=skipped, certificate=cert, trajectory=traj, seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------- tables
def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.4g}"


def format_table(comparison: Comparison) -> str:
    """The metrics per mechanism and the proposed mechanism's percentage changes, as text."""
    keys = list(METRICS)
    names = list(comparison.metrics)
    width = max(len(n) for n in names) + 2
    lines = [f"Mechanism comparison on {comparison.market_name!r} (equilibrium by {comparison.solver}, "
             f"certificate: {comparison.certificate.get('status')})", ""]
    head = "metric".ljust(26) + "".join(n.rjust(width) for n in names) + "  unit"
    lines += [head, "-" * len(head)]
    for k in keys:
        lines.append(k.ljust(26) + "".join(_fmt(comparison.metrics[n][k]).rjust(width) for n in names)
                     + f"  {METRICS[k][0]}")
    lines += ["", "proposed vs alternative, % change (negative = proposed is lower)", ""]
    alts = [n for n in names if n != "proposed"]
    head = "metric".ljust(26) + "".join(n.rjust(width) for n in alts) + "  paper claim"
    lines += [head, "-" * len(head)]
    for k in keys:
        claim = PAPER_CLAIMS.get(k)
        lines.append(k.ljust(26) + "".join(_fmt(comparison.percent_vs[n][k]).rjust(width) for n in alts)
                     + (f"  {claim:+.1f}%" if claim is not None else ""))
    for name, why in comparison.skipped.items():
        lines.append(f"(skipped {name}: {why})")
    return "\n".join(lines)


def comparison_csv(comparison: Comparison) -> str:
    """CSV: one row per mechanism, a column per metric, then one per percentage change."""
    keys = list(METRICS)
    rows = []
    for name, row in comparison.metrics.items():
        pct = comparison.percent_vs.get(name, {k: 0.0 for k in keys})
        rows.append([name] + [repr(float(row[k])) for k in keys] + [repr(float(pct[k])) for k in keys])
    return csv_text(["mechanism"] + keys + [f"pct_change_{k}" for k in keys], rows)


# ----------------------------------------------------------------------------- plots
def _png_with_footer_legend(fig, handles, labels) -> bytes:
    """Lay out ``fig``, put one legend row below the panels, render it to PNG and close it."""
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(labels), fontsize=9,
               frameon=False)
    return png_bytes(fig)


def plot_metrics(comparison: Comparison) -> bytes:
    """Bar chart: one panel per headline metric, one bar per mechanism (PNG bytes)."""
    plt = headless_pyplot()
    names = list(comparison.metrics)
    colors = plt.get_cmap("tab10")(np.arange(len(names)) % 10)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, key in zip(axes.ravel(), HEADLINE):
        values = [comparison.metrics[n][key] for n in names]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=9)
        unit, desc = METRICS[key]
        ax.set_title(desc if len(desc) < 48 else key.replace("_", " "), fontsize=10)
        ax.set_ylabel(f"{key.replace('_', ' ')} [{unit}]")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors]
    fig.suptitle(f"Mechanisms on {comparison.market_name!r} (proposed = personalized-QoE equilibrium)")
    return _png_with_footer_legend(fig, handles, names)


def plot_trajectory(comparison: Comparison, mu_names=None) -> bytes:
    """Reward per MU over the Pyomo Gauss-Seidel rounds, and the default solver's gains (PNG)."""
    plt = headless_pyplot()
    traj = comparison.trajectory
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    rounds = traj.get("pyomo") or []
    if rounds:
        arr = np.asarray(rounds, dtype=float)
        for m in range(arr.shape[1]):
            label = mu_names[m] if mu_names is not None and arr.shape[1] <= 15 else None
            left.plot(np.arange(arr.shape[0]), arr[:, m], marker="o", ms=3, lw=1.2, label=label)
        left.set_xlabel("Gauss-Seidel round (0 = start)")
        left.set_ylabel("reward r_m [money per unit QoE]")
        left.set_yscale("log")
        left.set_title("Pyomo reference: each MU's reward per round")
        if arr.shape[1] <= 15:
            left.legend(fontsize=7, ncol=2, title="MU")
    else:
        left.text(0.5, 0.5, "Pyomo trajectory not recorded:\n" + traj.get("pyomo_unavailable", "disabled"),
                  ha="center", va="center", wrap=True, fontsize=9)
        left.set_axis_off()
    gains = traj.get("dual_perturbation_gain") or []
    default_rounds = traj.get("default") or []
    if default_rounds:
        arr = np.asarray(default_rounds, dtype=float)
        for m in range(arr.shape[1]):
            right.plot(np.arange(arr.shape[0]), arr[:, m], lw=1.2)
        right.set_xlabel("round (0 = start)")
        right.set_ylabel("reward r_m [money per unit QoE]")
        right.set_yscale("log")
        right.set_title(f"{traj.get('solver', 'default')} solver: each MU's reward per round")
        right.grid(alpha=0.3)
    elif gains:
        g = np.maximum(np.asarray(gains, dtype=float), 1e-18)
        right.semilogy(np.arange(1, len(g) + 1), g, lw=1.2, label=f"{traj.get('solver', 'default')} solver")
        right.set_xlabel("round")
        right.set_ylabel("largest predicted gain / utility scale [relative]")
        right.set_title("Default solver: progress per round")
        right.legend(fontsize=8)
        right.grid(alpha=0.3)
    else:
        right.set_axis_off()
    fig.tight_layout()
    return png_bytes(fig)


def write_comparison(comparison: Comparison, out_dir: str | Path, *, mu_names=None) -> list[Path]:
    """Write ``table.txt``, ``comparison.csv``, ``comparison.json``, ``metrics.png`` and
    ``trajectory.png`` into ``out_dir`` (each atomically). Returns the paths."""
    out = Path(out_dir)
    paths = [
        atomic_write_text(out / "table.txt", format_table(comparison) + "\n"),
        atomic_write_text(out / "comparison.csv", comparison_csv(comparison)),
        atomic_write_json(out / "comparison.json", json_ready({**asdict(comparison), "metric_units": METRICS,
                                                                 "paper_claims_percent": PAPER_CLAIMS})),
        atomic_write_bytes(out / "metrics.png", plot_metrics(comparison)),
        atomic_write_bytes(out / "trajectory.png", plot_trajectory(comparison, mu_names)),
    ]
    return paths


# ----------------------------------------------------------------------------- sweeps
SWEEP_AXES = {
    "mus": "number of MUs",
    "capacity": "capacity scale (x the scenario's compute and bandwidth capacities)",
    "weight_spread": "spread of personal weights (0 = everyone (1/3, 1/3, 1/3), 1 = as drawn)",
}
#: Short x-axis labels with units.
AXIS_LABELS = {"mus": "number of MUs", "capacity": "capacity scale [x scenario]",
               "weight_spread": "weight spread [0 = all (1/3,1/3,1/3), 1 = drawn]"}
#: Default grid per axis.
DEFAULT_VALUES = {"mus": (6, 12, 24, 48), "capacity": (0.25, 0.5, 1.0, 2.0, 4.0),
                  "weight_spread": (0.0, 0.25, 0.5, 0.75, 1.0)}


@dataclass(frozen=True)
class SweepConfig:
    """A seeded sweep grid (saved as ``config.json`` next to the rows)."""

    axis: str = "mus"
    """Which parameter varies: ``"mus"``, ``"capacity"`` or ``"weight_spread"``."""
    values: tuple = ()
    """Values of the axis (default :data:`DEFAULT_VALUES`)."""
    seeds: tuple = (0, 1, 2)
    """Scenario seeds; every value is run for every seed."""
    n_asps: int = 3
    """ASPs per generated scenario."""
    n_mus: int = 12
    """MUs per generated scenario (when the axis is not ``"mus"``)."""
    solver: str = "dual-perturbation"
    """Equilibrium solver."""
    mechanisms: tuple = MECHANISMS
    """Mechanisms to run."""

    def grid(self) -> list[tuple]:
        """``(value, seed)`` points in order."""
        values = self.values or DEFAULT_VALUES[self.axis]
        return [(v, s) for v in values for s in self.seeds]


def sweep_market(config: SweepConfig, value, seed: int) -> Market:
    """The generated market of one grid point."""
    from market.generator import generate_scenario

    n_mus = int(value) if config.axis == "mus" else config.n_mus
    scn = generate_scenario(config.n_asps, n_mus, seed, name=f"sweep-{config.axis}-{value}-{seed}")
    market = Market.from_scenario(scn)
    if config.axis == "capacity":
        market = replace(market, compute_capacity=market.compute_capacity * float(value),
                         bandwidth_capacity=market.bandwidth_capacity * float(value))
    elif config.axis == "weight_spread":
        s = float(value)
        third = 1.0 / 3.0
        market = replace(market, weight_accuracy=third + s * (market.weight_accuracy - third),
                         weight_tokens=third + s * (market.weight_tokens - third),
                         weight_timeliness=third + s * (market.weight_timeliness - third))
    return market


def run_point(config: SweepConfig, value, seed: int) -> dict:
    """One grid point: every mechanism's metrics (a JSON-ready row)."""
    market = sweep_market(config, value, seed)
    comp = compare(market, solver=config.solver, names=config.mechanisms, trajectory=False)
    return json_ready({"axis": config.axis, "value": value, "seed": seed, "metrics": comp.metrics,
                       "percent_vs": comp.percent_vs, "status": comp.certificate.get("status"),
                       "seconds": comp.seconds})


def _run_point_args(args):
    config_dict, value, seed = args
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return run_point(SweepConfig(**config_dict), value, seed)


def sweep_identity(config: SweepConfig) -> dict:
    """What makes two sweeps the same run (recorded in the output folder's marker): every
    field of the config, with the default grid written out. Executor and workers are left out:
    they change how fast the rows come, not what they are."""
    cfg = json_ready(asdict(config))
    cfg["values"] = json_ready(list(config.values or DEFAULT_VALUES[config.axis]))
    return cfg


def legacy_sweep(folder: Path, identity: dict) -> bool:
    """A sweep folder written before output markers existed whose ``config.json`` is this sweep."""
    return json_ready(json.loads((folder / "config.json").read_text())) == identity


def run_sweep(config: SweepConfig, out_dir: str | Path, *, executor: str = "process", workers: int = 2,
              progress=None, overwrite: bool = False) -> list[dict]:
    """Run the grid, appending each finished row to ``out_dir/rows.jsonl`` (resumes).

    The folder follows the output policy of :mod:`incentive.outdir`: a folder holding another
    sweep (its marker's config differs in any field: values, seeds, axis, ...) is refused,
    naming the field, unless ``overwrite``; the same sweep resumes.

    Parameters
    ----------
    executor : ``"process"`` (multiprocessing pool; workers die with the sweep), ``"ray"``
        (local Ray cluster, ``num_cpus=workers``) or ``"serial"``.
    workers : parallel workers.
    progress : optional callable ``(done, total)``.
    overwrite : replace a folder that holds something else.
    """
    from incentive.outdir import check_output_dir, open_run_dir

    if config.axis not in SWEEP_AXES:
        raise UserError(f"sweep axis must be one of {', '.join(SWEEP_AXES)}, got {config.axis!r}")
    if executor not in ("process", "ray", "serial"):
        raise UserError(f"executor must be 'process', 'ray' or 'serial', got {executor!r}")
    identity = sweep_identity(config)
    out = open_run_dir(check_output_dir(out_dir, command="sweep", identity=identity, overwrite=overwrite,
                                        what="sweep", adopt=lambda folder: legacy_sweep(folder, identity)))
    atomic_write_json(out / "config.json", identity)
    rows_path = out / "rows.jsonl"
    grid = {(float(v), int(s)) for v, s in config.grid()}
    rows, done = [], set()
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            try:
                row = json.loads(line)
                key = (float(row["value"]), int(row["seed"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut by an interruption: redo that point
            if row.get("axis") == config.axis and key in grid and key not in done:
                rows.append(row)
                done.add(key)
    todo = [(v, s) for v, s in config.grid() if (float(v), int(s)) not in done]
    total = len(config.grid())
    args = [(asdict(config), v, s) for v, s in todo]

    def record(row):
        rows.append(row)
        with open(rows_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if progress:
            progress(len(rows), total)

    from solvers.decomposition import map_unordered

    for row in map_unordered(_run_point_args, args, executor=executor, workers=workers):
        record(row)
    return rows


def sweep_summary(rows: list[dict]) -> dict:
    """mechanism -> metric -> value -> (mean, std over seeds)."""
    out: dict = {}
    for row in rows:
        for mech, metrics in row["metrics"].items():
            for k, v in metrics.items():
                out.setdefault(mech, {}).setdefault(k, {}).setdefault(float(row["value"]), []).append(
                    np.nan if v is None else float(v))
    return {m: {k: {x: (float(np.nanmean(v)), float(np.nanstd(v))) for x, v in sorted(d.items())}
                for k, d in ks.items()} for m, ks in out.items()}


def plot_sweep(rows: list[dict], axis: str) -> bytes:
    """Headline metrics against the swept value, mean over seeds with a +/- 1 std band (PNG)."""
    plt = headless_pyplot()
    summary = sweep_summary(rows)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    names = [m for m in MECHANISMS if m in summary]
    colors = plt.get_cmap("tab10")
    for ax, key in zip(axes.ravel(), HEADLINE):
        for i, mech in enumerate(names):
            series = summary[mech].get(key, {})
            xs = np.array(sorted(series))
            if xs.size == 0:
                continue
            mean = np.array([series[x][0] for x in xs])
            std = np.array([series[x][1] for x in xs])
            style = "-" if mech == "proposed" else "--"
            ax.plot(xs, mean, style, marker="o", ms=4, lw=2.2 if mech == "proposed" else 1.2,
                    color=colors(i % 10), label=mech)
            ax.fill_between(xs, mean - std, mean + std, color=colors(i % 10), alpha=0.12)
        unit = METRICS[key][0]
        ax.set_xlabel(AXIS_LABELS[axis])
        ax.set_ylabel(f"{key.replace('_', ' ')} [{unit}]")
        ax.set_title(METRICS[key][1] if len(METRICS[key][1]) < 48 else key.replace("_", " "), fontsize=10)
        if axis == "capacity":
            ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    seeds = sorted({r["seed"] for r in rows})
    spread_words = f"mean over seeds {seeds}, band = +/- 1 std" if len(seeds) > 1 else f"seed {seeds[0]} only: n=1, no spread"
    fig.suptitle(f"Sweep over the {SWEEP_AXES[axis].split(' (')[0]} ({spread_words})")
    return _png_with_footer_legend(fig, handles, labels)


def write_sweep(rows: list[dict], config: SweepConfig, out_dir: str | Path) -> list[Path]:
    """``summary.json``, ``summary.csv`` and ``sweep_<axis>.png`` from the rows."""
    out = Path(out_dir)
    summary = sweep_summary(rows)
    csv_rows = [[mech, k, x, repr(mean), repr(std)]
                for mech, ks in summary.items() for k, d in ks.items() for x, (mean, std) in d.items()]
    return [
        atomic_write_json(out / "summary.json", json_ready({"axis": config.axis, "summary": {
            m: {k: {str(x): v for x, v in d.items()} for k, d in ks.items()} for m, ks in summary.items()}})),
        atomic_write_text(out / "summary.csv", csv_text(["mechanism", "metric", config.axis, "mean", "std"], csv_rows)),
        atomic_write_bytes(out / f"sweep_{config.axis}.png", plot_sweep(rows, config.axis)),
    ]
