"""The report of an ``incentive run``: report.md with tables, CSVs and PNG plots.

What this module is for: turn a :class:`incentive.pipeline.PipelineResult` into files a user
reads: ``report.md`` (summary, market, calibration, provisioning slots, modelled vs measured
QoE per user and per ASP, payments and utilities, resource use, notes), ``users.csv``,
``asps.csv``, ``slots.csv`` (and ``calibration.csv``), the plots ``qoe_per_user.png``,
``resources_per_asp.png``, ``reward_vs_qoe.png`` (and ``calibration_shift.png``), and
``config.json``. Plots use matplotlib's Agg backend (no display needed). Every file is
written atomically (``market.atomic``) into the folder it is given.

May import: the standard library, numpy, matplotlib, ``market.atomic``. It reads the result
object by duck typing (it never imports ``incentive.pipeline``'s heavy dependencies).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from market.atomic import atomic_write_json, atomic_write_text


def _f(x: Any, spec: str = ".3f") -> str:
    if x is None:
        return "-"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "-")
    return format(v, spec)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _csv(head: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(head)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


# ----------------------------------------------------------------------------- CSV rows
USER_COLUMNS = [
    "name", "asp", "model", "reward", "weight_accuracy", "weight_tokens", "weight_timeliness",
    "compute", "bandwidth_hz", "link_rate_bps", "deadline_s", "slot", "slot_method", "provisioning_weight",
    "trials", "power_w", "ber", "distance_m", "difficulty", "quality_threshold",
    "accuracy_modelled", "accuracy_measured", "accuracy_ci_low", "accuracy_ci_high",
    "tokens_modelled", "tokens_measured", "latency_modelled_s", "latency_measured_s",
    "qoe_modelled", "qoe_measured", "qoe_measured_ci_low", "qoe_measured_ci_high", "qoe_gap",
    "qoe_trials_shift", "qoe_gap_residual",
    "qoe_accuracy_modelled", "qoe_accuracy_measured", "qoe_tokens_modelled", "qoe_tokens_measured",
    "qoe_timeliness_modelled", "qoe_timeliness_measured",
    "payment_modelled", "payment_measured", "utility_modelled", "utility_measured",
]


def user_rows(users: list[dict]) -> list[list[Any]]:
    """One CSV row per user, columns :data:`USER_COLUMNS`."""
    rows = []
    for u in users:
        p, me, mo, ms = u["provisioning"], u["measurement"], u["modelled"], u["measured"]
        rows.append([
            u["name"], u["asp"], u["model"], u["reward"], u["weights"]["accuracy"], u["weights"]["tokens"],
            u["weights"]["timeliness"], u["compute"], u["bandwidth"], u["link_rate_bps"], u["deadline_s"],
            p["slot"], p["slot_method"], p["weight"], p["trials"], p["power_w"], p["ber"], p["distance_m"],
            p["difficulty"], p["quality_threshold"],
            mo["accuracy"], me["accuracy"], me["accuracy_ci95"][0], me["accuracy_ci95"][1],
            mo["tokens"], me["tokens"], mo["latency_s"], _finite(me["latency_s"]),
            mo["qoe"], _finite(ms["qoe"]), _finite(ms["qoe_ci95"][0]), _finite(ms["qoe_ci95"][1]), _finite(u["qoe_gap"]),
            _finite(u["trials_shift"]), _finite(u["qoe_gap_residual"]),
            mo["qoe_accuracy"], ms["qoe_accuracy"], mo["qoe_tokens"], ms["qoe_tokens"],
            mo["qoe_timeliness"], _finite(ms["qoe_timeliness"]),
            mo["payment"], _finite(ms["payment"]), mo["utility"], _finite(ms["utility"]),
        ])
    return rows


def _finite(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


ASP_COLUMNS = ["name", "model", "mus", "compute_price", "bandwidth_price", "compute_used", "compute_capacity",
               "bandwidth_used", "bandwidth_capacity", "revenue", "cost", "profit", "revenue_measured",
               "mean_qoe_modelled", "mean_qoe_measured", "trials_total", "power_w_total"]
SLOT_COLUMNS = ["slot", "asp", "users", "method", "max_trials", "p_total_w", "trials", "power_w", "utility",
                "oracle_utility", "policy_utility", "fraction_of_oracle", "oracle_trials", "oracle_power_w"]


def _slot_row(s: dict) -> list[Any]:
    return [s["slot"], s["asp"], " ".join(s["users"]), s["method"], s["max_trials"], s["p_total_w"],
            " ".join(str(t) for t in s["trials"]), " ".join(f"{p:.4g}" for p in s["power_w"]), s["utility"],
            s["oracle_utility"], s["policy_utility"], s["fraction_of_oracle"],
            " ".join(str(t) for t in s["oracle_trials"]), " ".join(f"{p:.4g}" for p in s["oracle_power_w"])]


# ----------------------------------------------------------------------------- plots
def _plots(result, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    files = []
    users = result.users
    names = [u["name"] for u in users]
    x = np.arange(len(users))

    # modelled vs measured QoE per user
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(users) + 2), 4.2))
    modelled = [u["modelled"]["qoe"] or 0.0 for u in users]
    measured = [(_finite(u["measured"]["qoe"]) or 0.0) for u in users]
    lo = [max(0.0, m - (_finite(u["measured"]["qoe_ci95"][0]) if _finite(u["measured"]["qoe_ci95"][0]) is not None else m))
          for m, u in zip(measured, users)]
    hi = [max(0.0, (_finite(u["measured"]["qoe_ci95"][1]) if _finite(u["measured"]["qoe_ci95"][1]) is not None else m) - m)
          for m, u in zip(measured, users)]
    ax.bar(x - 0.2, modelled, width=0.4, label="modelled (market)", color="#4C72B0")
    ax.bar(x + 0.2, measured, width=0.4, yerr=[lo, hi], capsize=3, label="measured (backend, 95% CI)", color="#DD8452")
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("QoE")
    ax.set_title("QoE per user: market model vs measured generation")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append("qoe_per_user.png")
    fig.savefig(out / files[-1], dpi=110)
    plt.close(fig)

    # resource use per ASP (share of capacity)
    asps = result.asps
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(asps) + 2), 4.0))
    xa = np.arange(len(asps))
    fshare = [(a["compute_used"] or 0) / a["compute_capacity"] for a in asps]
    bshare = [(a["bandwidth_used"] or 0) / a["bandwidth_capacity"] for a in asps]
    ax.bar(xa - 0.2, fshare, width=0.4, label="compute used / capacity", color="#55A868")
    ax.bar(xa + 0.2, bshare, width=0.4, label="bandwidth used / capacity", color="#8172B2")
    for i, a in enumerate(asps):
        ax.text(i, max(fshare[i], bshare[i]) + 0.03, f"{a['mus']} MUs\n{a['trials_total']} trials", ha="center", fontsize=7)
    ax.set_xticks(xa)
    ax.set_xticklabels([f"{a['name']}\n({a['model']})" for a in asps], fontsize=8)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("share of capacity")
    ax.set_title("resource use per ASP at the equilibrium")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    files.append("resources_per_asp.png")
    fig.savefig(out / files[-1], dpi=110)
    plt.close(fig)

    # reward vs QoE scatter
    fig, ax = plt.subplots(figsize=(6.0, 4.5))
    colours = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for asp in sorted({u["asp"] for u in users}):
        colours.setdefault(asp, palette[len(colours) % len(palette)])
    for asp, colour in colours.items():
        mine = [u for u in users if u["asp"] == asp]
        r = [u["reward"] for u in mine]
        ax.scatter(r, [u["modelled"]["qoe"] or 0.0 for u in mine], marker="o", color=colour, label=f"{asp} modelled")
        ax.scatter(r, [(_finite(u["measured"]["qoe"]) or 0.0) for u in mine], marker="x", color=colour,
                   label=f"{asp} measured")
        for u in mine:
            ax.plot([u["reward"]] * 2, [u["modelled"]["qoe"] or 0.0, _finite(u["measured"]["qoe"]) or 0.0],
                    color=colour, alpha=0.4, linewidth=0.8)
    ax.set_xlabel("reward r_m (money per unit QoE)")
    ax.set_ylabel("QoE")
    ax.set_title("reward vs QoE (o modelled, x measured)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append("reward_vs_qoe.png")
    fig.savefig(out / files[-1], dpi=110)
    plt.close(fig)

    if result.calibration:
        shift = result.calibration["shift"]
        fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 0.8 * len(shift) + 3), 4.0))
        xs = np.arange(len(shift))
        for ax, key, label in ((axes[0], "reward", "reward"), (axes[1], "qoe", "modelled QoE")):
            ax.bar(xs - 0.2, [r[f"{key}_given"] or 0 for r in shift], width=0.4, label="scenario as given")
            ax.bar(xs + 0.2, [r[f"{key}_calibrated"] or 0 for r in shift], width=0.4, label="calibrated")
            ax.set_xticks(xs)
            ax.set_xticklabels([r["name"] for r in shift], rotation=45, ha="right", fontsize=7)
            ax.set_title(f"{label} at the equilibrium")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        files.append("calibration_shift.png")
        fig.savefig(out / files[-1], dpi=110)
        plt.close(fig)
    return files


# ----------------------------------------------------------------------------- markdown
def render_markdown(result, plots: list[str]) -> str:
    """The text of ``report.md``."""
    cfg, s, mk = result.config, result.summary, result.market
    cert = mk.get("certificate") or {}
    lines = [f"# incentive run: {mk.get('scenario')}", ""]
    if not result.certified:
        lines += ["> **WARNING: the market equilibrium is NOT certified** (status "
                  f"`{mk.get('status')}`; run with `--allow-uncertified`). Figures below rest on an unverified "
                  "equilibrium.", ""]
    lines += [
        f"Scenario `{result.scenario_file}`; provisioning **{cfg['provision']}**"
        + (", **calibrated** ASP profiles" if cfg["calibrate"] else "")
        + f"; {cfg['samples']} requests per user; seed {cfg['seed']}; backend on {result.device}; "
        f"total {result.timings_s.get('total_s', 0):.1f} s.",
        "",
        "## Summary",
        "",
        _table(["figure", "value"], [
            ["market status", f"{mk.get('status')} ({mk.get('solver')}, {mk.get('iterations')} iterations)"],
            ["certificate", f"{'passed' if cert.get('passed') else 'NOT passed'}: KKT residual {_f(cert.get('kkt_residual'), '.1e')}, "
                            f"max relative regret {_f(cert.get('max_relative_regret'), '.1e')}, tolerance {_f(cert.get('tolerance'), '.0e')}"],
            ["mean QoE modelled / measured", f"{_f(s['mean_qoe_modelled'])} / {_f(s['mean_qoe_measured'])}"],
            ["QoE gap (measured - modelled): mean, mean abs, max abs",
             f"{_f(s['mean_qoe_gap'], '+.3f')}, {_f(s['mean_abs_qoe_gap'])}, {_f(s['max_abs_qoe_gap'])}"],
            ["gap left after the trials shift (mean abs, max abs)",
             f"{_f(s['mean_abs_qoe_gap_residual'])}, {_f(s['max_abs_qoe_gap_residual'])}"],
            ["D3PG utility / oracle utility (slots where it ran and the optimum is positive)",
             f"{_f(s['d3pg_fraction_of_oracle_overall'])} over {s['d3pg_slots_with_positive_optimum']} slot(s); "
             f"mean utility below the oracle {_f(s['d3pg_mean_utility_below_oracle'], '.4f')}"],
            ["time per stage (s)", ", ".join(f"{k[:-2]} {v:.1f}" for k, v in result.timings_s.items())],
        ]),
        "",
    ]
    if result.calibration:
        cal = result.calibration
        lines += ["## Calibration: measured ASP profiles and how far the equilibrium moved", "",
                  "Each model was measured at one trial on a perfect link "
                  f"({cfg['calibration_samples']} requests); the scenario's ASP `accuracy`, `seconds_per_token`, "
                  "`max_tokens` and every MU's `payload_bits` (one output of its ASP's model) were replaced by the "
                  "measurements and the market re-solved.", ""]
        given = {a["name"]: a for a in (result.market_given or {}).get("asps", [])}
        rows = []
        for name, p in cal["profiles"].items():
            rows.append([name, f"{_f(p['accuracy'])} [{_f(p['accuracy_ci95'][0])}, {_f(p['accuracy_ci95'][1])}]",
                         _f(p["seconds_per_token"] * 1e3, ".3f"), p["tokens"], p["bits"], p["steps"], p["samples"]])
        lines += [_table(["model", "accuracy [95% CI]", "ms per token (unit compute)", "tokens", "bits", "steps", "requests"], rows), ""]
        rows = [[r["name"], r["asp"], _f(r["reward_given"], ".4g"), _f(r["reward_calibrated"], ".4g"),
                 _f(r["reward_change"], "+.4g"), _f(r["qoe_given"]), _f(r["qoe_calibrated"]), _f(r["qoe_change"], "+.3f")]
                for r in cal["shift"]]
        lines += [_table(["MU", "ASP", "reward given", "reward calibrated", "change", "QoE given", "QoE calibrated", "change"], rows),
                  "", f"Largest reward move {_f(cal['max_abs_reward_change'], '.4g')}; largest modelled-QoE move "
                  f"{_f(cal['max_abs_qoe_change'])}.", ""]
        if given:
            lines += [_table(["ASP", "profit given", "profit calibrated"],
                             [[a["name"], _f(given.get(a["name"], {}).get("profit"), ".4g"), _f(a["profit"], ".4g")]
                              for a in result.asps]), ""]
        if "calibration_shift.png" in plots:
            lines += ["![calibration shift](calibration_shift.png)", ""]

    lines += ["## Modelled vs measured QoE per user", "",
              "Modelled: the market's QoE at the equilibrium. Measured: the same formula with the backend's measured "
              "accuracy (judge, best of the user's trials, after the noisy link), tokens and latency "
              "(compute seconds at unit compute / allotted compute + transmission of every trial's bits at the allotted "
              "rate). The market prices one generation; a user given N trials waits about N times as long, so its "
              "timeliness drops by `w^T (N-1) t/T` (the *trials shift*, from the market's own figures); the "
              "*residual* is the gap that shift does not explain.", ""]
    rows = []
    for u in result.users:
        me, mo, ms, p = u["measurement"], u["modelled"], u["measured"], u["provisioning"]
        rows.append([u["name"], u["asp"], p["trials"], _f(p["ber"], ".1e"),
                     f"{_f(mo['accuracy'])} / {_f(me['accuracy'])} [{_f(me['accuracy_ci95'][0], '.2f')}, {_f(me['accuracy_ci95'][1], '.2f')}]",
                     f"{_f(mo['tokens'], '.0f')} / {me['tokens']}",
                     f"{_f(mo['latency_s'], '.3g')} / {_f(me['latency_s'], '.3g')}",
                     _f(mo["qoe"]), f"{_f(ms['qoe'])} [{_f(ms['qoe_ci95'][0], '.2f')}, {_f(ms['qoe_ci95'][1], '.2f')}]",
                     _f(u["qoe_gap"], "+.3f"), _f(u["trials_shift"], "+.3f"), _f(u["qoe_gap_residual"], "+.3f")])
    lines += [_table(["MU", "ASP", "trials", "BER", "accuracy model / measured [CI]", "tokens model / measured",
                      "latency s model / measured", "QoE model", "QoE measured [CI]", "gap", "trials shift",
                      "residual"], rows), "",
              "![modelled vs measured QoE](qoe_per_user.png)", "",
              "![reward vs QoE](reward_vs_qoe.png)", ""]
    lines += ["## Per ASP: resource use, payments, profit, QoE", ""]
    rows = [[a["name"], a["model"], a["mus"], f"{_f(a['compute_used'], '.3g')} / {_f(a['compute_capacity'], '.3g')}",
             f"{_f(a['bandwidth_used'], '.3g')} / {_f(a['bandwidth_capacity'], '.3g')}",
             _f(a["compute_price"], ".4g"), _f(a["bandwidth_price"], ".3g"), _f(a["revenue"], ".4g"),
             _f(a["revenue_measured"], ".4g"), _f(a["cost"], ".4g"), _f(a["profit"], ".4g"),
             _f(a["mean_qoe_modelled"]), _f(a["mean_qoe_measured"]), a["trials_total"], _f(a["power_w_total"], ".3g")]
            for a in result.asps]
    lines += [_table(["ASP", "model", "MUs", "compute used / cap", "bandwidth used / cap (Hz)", "compute price",
                      "bandwidth price", "revenue (model)", "revenue (measured QoE)", "cost", "profit (model)",
                      "mean QoE model", "mean QoE measured", "trials", "power W"], rows), "",
              "![resource use per ASP](resources_per_asp.png)", ""]
    lines += ["## Per user: payments and utilities", "",
              "Payment `r_m Q_m` and utility `(theta_m - r_m) Q_m`, at the modelled and at the measured QoE.", ""]
    rows = [[u["name"], _f(u["reward"], ".4g"), _f(u["value_per_qoe"], ".4g"), _f(u["modelled"]["payment"], ".4g"),
             _f(u["measured"]["payment"], ".4g"), _f(u["modelled"]["utility"], ".4g"), _f(u["measured"]["utility"], ".4g"),
             _f(u["compute"], ".3g"), _f(u["bandwidth"], ".3g")] for u in result.users]
    lines += [_table(["MU", "reward", "value per QoE", "payment model", "payment measured", "utility model",
                      "utility measured", "compute", "bandwidth Hz"], rows), ""]
    lines += ["## Provisioning slots", "",
              f"Each ASP serves its users in slots of Q = {result.slots[0]['size'] if result.slots else '-'}"
              " (the provisioning scenario's `num_users`; the last slot of an ASP may be partial). Utility: the "
              "provisioning objective (eq. (22a) with penalties, expected) of the chosen allocation; D3PG/oracle: the "
              "policy's utility as a fraction of the exact optimum's in the same slot.", ""]
    rows = [[s_["slot"], ", ".join(s_["users"]), s_["method"], s_["max_trials"], _f(s_["p_total_w"], ".3g"),
             " ".join(str(t) for t in s_["trials"]), " ".join(_f(p, ".3f") for p in s_["power_w"]),
             _f(s_["utility"], ".4f"), _f(s_["oracle_utility"], ".4f"), _f(s_["policy_utility"], ".4f"),
             _f(s_["fraction_of_oracle"], ".3f")] for s_ in result.slots]
    lines += [_table(["slot", "users", "method", "N_max", "P_total W", "trials", "power W", "utility", "oracle utility",
                      "D3PG utility", "D3PG / oracle"], rows), ""]
    rows = [[u["name"], u["provisioning"]["slot"], _f(u["reward"], ".4g"), _f(u["provisioning"]["weight"], ".3f"),
             _f(u["provisioning"]["distance_derived_m"], ".0f") + (" (clipped to " + _f(u["provisioning"]["distance_m"], ".0f") + ")"
                                                                 if u["provisioning"]["distance_clipped"] else ""),
             _f(u["provisioning"]["difficulty"], ".2f"), _f(u["provisioning"]["quality_threshold"], ".2f"),
             _f(u["provisioning"]["provisioning_qoe"], ".3f")] for u in result.users]
    lines += ["Users' provisioning states (derived deterministically from the scenario and the seed; see docs/pipeline.md):", "",
              _table(["MU", "slot", "reward", "weight in slot", "distance m", "difficulty", "quality threshold",
                      "provisioning QoE (expected)"], rows), ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += ["## Files", "", "`result.json` (everything), `users.csv`, `asps.csv`, `slots.csv`"
              + (", `calibration.csv`" if result.calibration else "") + ", `config.json` (the pipeline configuration), "
              + ", ".join(f"`{p}`" for p in plots) + ".", ""]
    return "\n".join(lines)


def write_report(result, out_dir: str | Path) -> list[str]:
    """Write report.md, CSVs, plots and config.json into ``out_dir``; return the file names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    atomic_write_text(out / "users.csv", _csv(USER_COLUMNS, user_rows(result.users)))
    atomic_write_text(out / "asps.csv", _csv(ASP_COLUMNS, [[a.get(c) for c in ASP_COLUMNS] for a in result.asps]))
    atomic_write_text(out / "slots.csv", _csv(SLOT_COLUMNS, [_slot_row(s) for s in result.slots]))
    files += ["users.csv", "asps.csv", "slots.csv"]
    if result.calibration:
        head = ["name", "asp", "reward_given", "reward_calibrated", "reward_change", "qoe_given", "qoe_calibrated", "qoe_change"]
        atomic_write_text(out / "calibration.csv", _csv(head, [[r[h] for h in head] for r in result.calibration["shift"]]))
        files.append("calibration.csv")
    atomic_write_json(out / "config.json", result.config)
    files.append("config.json")
    plots = _plots(result, out)
    files += plots
    atomic_write_text(out / "report.md", render_markdown(result, plots))
    files.append("report.md")
    return files
