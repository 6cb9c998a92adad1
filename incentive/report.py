"""The report of an ``incentive run``: report.md with tables, CSVs and PNG plots.

What this module is for: turn an ``incentive run`` result (the ``result.json`` form of
:class:`incentive.pipeline.PipelineResult`) into files a user reads: ``report.md`` (summary, calibration, the market <-> provisioning rounds, modelled vs
measured QoE per user with the gap split into noise and model error, per ASP, payments and
utilities, provisioning slots, notes), ``users.csv``, ``asps.csv``, ``slots.csv``, the plots
``qoe_per_user.png``, ``resources_per_asp.png``, ``reward_vs_qoe.png``, and ``config.json``. Plots use matplotlib's Agg backend (no display needed). Every file is
written atomically (``market.atomic``) into the folder it is given.

It also writes the run's standard notes (:func:`standard_notes`). The first line of
``report.md`` says when the scenario is not calibrated and gives the command that calibrates it.

May import: the standard library, numpy, matplotlib, ``market.atomic``. It reads the result's
plain-data form (it never imports ``incentive.pipeline``'s heavy dependencies).
"""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from market.atomic import atomic_write_json, atomic_write_png, atomic_write_text, csv_text


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


# ----------------------------------------------------------------------------- CSV rows
USER_COLUMNS = [
    "name", "asp", "model", "reward", "weight_accuracy", "weight_tokens", "weight_timeliness",
    "compute", "bandwidth_hz", "link_rate_bps", "deadline_s", "slot", "slot_method", "provisioning_weight",
    "trials", "power_w", "ber", "distance_m", "difficulty", "quality_threshold",
    "accuracy_modelled", "accuracy_measured", "accuracy_ci_low", "accuracy_ci_high",
    "tokens_modelled", "tokens_measured", "latency_modelled_s", "latency_measured_s",
    "qoe_modelled", "qoe_measured", "qoe_measured_ci_low", "qoe_measured_ci_high", "qoe_gap",
    "qoe_gap_noise", "qoe_gap_model_error",
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
            mo["tokens"], me["tokens"], _finite(mo["latency_s"]), _finite(me["latency_s"]),
            _finite(mo["qoe"]), _finite(ms["qoe"]), _finite(u["measured_qoe_ci95"][0]), _finite(u["measured_qoe_ci95"][1]),
            _finite(u["qoe_gap"]), _finite(u["qoe_gap_noise"]), _finite(u["qoe_gap_model_error"]),
            mo["qoe_accuracy"], ms["qoe_accuracy"], mo["qoe_tokens"], ms["qoe_tokens"],
            _finite(mo["qoe_timeliness"]), _finite(ms["qoe_timeliness"]),
            _finite(mo["payment"]), _finite(ms["payment"]), _finite(mo["utility"]), _finite(ms["utility"]),
        ])
    return rows


def _finite(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


ASP_COLUMNS = ["name", "model", "mus", "compute_price", "bandwidth_price", "compute_used", "compute_capacity",
               "compute_binding", "bandwidth_used", "bandwidth_capacity", "bandwidth_binding", "revenue", "cost",
               "profit", "revenue_measured",
               "mean_qoe_modelled", "mean_qoe_measured", "trials_total", "power_w_total"]
SLOT_COLUMNS = ["slot", "asp", "users", "method", "max_trials", "p_total_w", "trials", "power_w", "utility",
                "oracle_utility", "policy_utility", "fraction_of_oracle", "oracle_trials", "oracle_power_w"]


def _slot_row(s: dict) -> list[Any]:
    return [s["slot"], s["asp"], " ".join(s["users"]), s["method"], s["max_trials"], s["p_total_w"],
            " ".join(str(t) for t in s["trials"]), " ".join(f"{p:.4g}" for p in s["power_w"]), s["utility"],
            s["oracle_utility"], s["policy_utility"], s["fraction_of_oracle"],
            " ".join(str(t) for t in s["oracle_trials"]), " ".join(f"{p:.4g}" for p in s["oracle_power_w"])]


# ----------------------------------------------------------------------------- plots
#: Most users drawn as bars in qoe_per_user.png (beyond: a modelled-vs-measured scatter).
MAX_BARS = 60


def _plots(result, out: Path) -> list[str]:
    from market.atomic import headless_pyplot

    plt = headless_pyplot()
    import numpy as np

    files = []
    users = result.users
    names = [u["name"] for u in users]
    x = np.arange(len(users))

    # modelled vs measured QoE per user (bars up to MAX_BARS users, a scatter beyond)
    modelled = [_finite(u["modelled"]["qoe"]) or 0.0 for u in users]
    measured = [(_finite(u["measured"]["qoe"]) or 0.0) for u in users]
    if len(users) > MAX_BARS:
        fig, ax = plt.subplots(figsize=(5.5, 5.0))
        ax.scatter(modelled, measured, s=4, alpha=0.4, color="#DD8452")
        ends = [min(modelled + measured), max(modelled + measured)]
        ax.plot(ends, ends, color="black", linewidth=0.8, label="measured = modelled")
        ax.set_xlabel("modelled QoE (market)")
        ax.set_ylabel("measured QoE (backend)")
        ax.set_title(f"QoE of {len(users)} users: market model vs measured generation")
    else:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(users) + 2), 4.2))
        lo = [max(0.0, m - (_finite(u["measured_qoe_ci95"][0]) if _finite(u["measured_qoe_ci95"][0]) is not None else m))
              for m, u in zip(measured, users)]
        hi = [max(0.0, (_finite(u["measured_qoe_ci95"][1]) if _finite(u["measured_qoe_ci95"][1]) is not None else m) - m)
              for m, u in zip(measured, users)]
        ax.bar(x - 0.2, modelled, width=0.4, label="modelled (market)", color="#4C72B0")
        ax.bar(x + 0.2, measured, width=0.4, yerr=[lo, hi], capsize=3, label="measured (backend, 95% CI)", color="#DD8452")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("QoE")
        ax.set_title("QoE per user: market model vs measured generation")
        ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append("qoe_per_user.png")
    atomic_write_png(out / files[-1], fig)

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
    atomic_write_png(out / files[-1], fig)

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
        for u in mine[:MAX_BARS]:
            ax.plot([u["reward"]] * 2, [u["modelled"]["qoe"] or 0.0, _finite(u["measured"]["qoe"]) or 0.0],
                    color=colour, alpha=0.4, linewidth=0.8)
    ax.set_xlabel("reward r_m (money per unit QoE)")
    ax.set_ylabel("QoE")
    ax.set_title("reward vs QoE (o modelled, x measured)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.append("reward_vs_qoe.png")
    atomic_write_png(out / files[-1], fig)

    return files


# ----------------------------------------------------------------------------- markdown
def calibrate_command(scenario_file: str) -> str:
    """The commands that calibrate ``scenario_file`` (printed by the report and ``incentive run``)."""
    stem = Path(scenario_file).stem
    return (f"`incentive backend calibrate --base-scenario {scenario_file} --out runs/calibrated-{stem}` then "
            f"`incentive run runs/calibrated-{stem}/scenario.toml` (or `incentive run {scenario_file} --calibrate`)")


def _summary_rows(result) -> list[list[Any]]:
    s, mk, cfg = result.summary, result.market, result.config
    cert = mk.get("certificate") or {}
    rows = [
        ["market status", f"{mk.get('status')} ({mk.get('solver')}, {mk.get('iterations')} iterations)"],
        ["certificate", f"{'passed' if cert.get('passed') else 'NOT passed'}: KKT residual {_f(cert.get('kkt_residual'), '.1e')}, "
                        f"max relative regret {_f(cert.get('max_relative_regret'), '.1e')}, tolerance {_f(cert.get('tolerance'), '.0e')}"],
        ["market <-> provisioning", f"{'converged' if s['converged'] else 'NOT converged'} in {s['rounds']} round(s) "
                                    f"(trials unchanged, priced accuracy within {cfg['accuracy_tolerance']:g})"
                                    + (f"; {len(s['held_users'])} user(s) held at their priced trials after their "
                                       f"decision cycled: {', '.join(s['held_users'][:10])}" if s["held_users"] else "")],
        ["mean QoE modelled / measured", f"{_f(s['mean_qoe_modelled'])} / {_f(s['mean_qoe_measured'])}"],
        ["QoE gap (measured - modelled): mean, mean abs, max abs",
         f"{_f(s['mean_qoe_gap'], '+.3f')}, {_f(s['mean_abs_qoe_gap'])}, {_f(s['max_abs_qoe_gap'])}"],
        ["sampling noise: mean 95% half-width of the gap; users whose gap is within it",
         f"{_f(s['mean_qoe_gap_noise'])}; {s['users_gap_within_noise']} of {s['users']}"],
        ["model error (gap beyond the noise): mean abs, max abs",
         f"{_f(s['mean_abs_model_error'])}, {_f(s['max_abs_model_error'])}"],
        ["mean abs gap by part: accuracy, tokens, timeliness",
         ", ".join(_f(s["mean_abs_gap_by_part"][p]) for p in ("accuracy", "tokens", "timeliness"))],
        ["tokens measured = modelled for every user", "yes" if s["tokens_measured_equal_modelled"] else "NO"],
        ["rewards interior / at floor / at cap", f"{s['rewards_interior']} / {s['rewards_at_floor']} / {s['rewards_at_cap']}"],
        ["binding capacities", ", ".join(s["binding_capacities"]) or "none"],
        ["users per number of trials", ", ".join(f"N={k}: {v}" for k, v in s["trials_distribution"].items())],
    ]
    head = s.get("policy_vs_oracle")
    if head is not None:
        left = "; ".join(f"{v} {k}" for k, v in head["left_out"].items()) or "none"
        rows.append(["D3PG utility / oracle utility (ratio of sums)",
                     f"{_f(head['ratio'])} over {head['slots_counted']} slot(s); {head['slots_left_out']} left out "
                     f"({left}); mean utility below the oracle {_f(head['mean_utility_below_oracle'], '.4f')}"])
    rows.append(["time per stage (s)", ", ".join(f"{k[:-2]} {v:.1f}" for k, v in result.timings_s.items())])
    return rows


#: Most users listed in report.md's per-user tables (all of them are in users.csv and result.json).
MAX_USERS_LISTED = 200


def _user_rows_md(result) -> list[list[Any]]:
    rows = []
    for u in result.users[:MAX_USERS_LISTED]:
        me, mo, ms, p = u["measurement"], u["modelled"], u["measured"], u["provisioning"]
        rows.append([u["name"], u["asp"], p["trials"], _f(p["power_w"], ".3f"), _f(p["ber"], ".1e"),
                     f"{_f(mo['accuracy'])} / {_f(me['accuracy'])} [{_f(me['accuracy_ci95'][0], '.2f')}, {_f(me['accuracy_ci95'][1], '.2f')}]",
                     f"{_f(mo['tokens'], '.0f')} / {me['tokens']}",
                     f"{_f(mo['latency_s'] * 1e3, '.3g')} / {_f(me['latency_s'] * 1e3, '.3g')}",
                     _f(mo["qoe"]), f"{_f(ms['qoe'])} [{_f(u['measured_qoe_ci95'][0], '.2f')}, {_f(u['measured_qoe_ci95'][1], '.2f')}]",
                     _f(u["qoe_gap"], "+.3f"), _f(u["qoe_gap_noise"], ".3f"), _f(u["qoe_gap_model_error"], "+.3f")])
    return rows


def render_markdown(result, plots: list[str]) -> str:
    """The text of ``report.md``."""
    cfg, mk = result.config, result.market
    lines = []
    if not result.calibrated:
        lines += [f"**UNCALIBRATED scenario**: its ASP profiles are not the shipped models' measured ones "
                  f"({'; '.join(result.uncalibrated_reasons[:3])}{'; ...' if len(result.uncalibrated_reasons) > 3 else ''}), "
                  f"so the gaps below mostly measure that difference. Calibrate it: {calibrate_command(result.scenario_file)}.", ""]
    lines += [f"# incentive run: {mk.get('scenario')}", ""]
    if not result.certified:
        lines += ["> **WARNING: the market equilibrium is NOT certified** (status "
                  f"`{mk.get('status')}`; run with `--allow-uncertified`). Figures below rest on an unverified "
                  "equilibrium.", ""]
    lines += [f"Scenario `{result.scenario_file}`" + (" (calibrated by this run)" if result.calibration else "")
              + f"; provisioning **{cfg['provision']}**; {cfg['samples']} requests per user; seed {cfg['seed']}; "
              f"backend on {result.device}; total {result.timings_s.get('total_s', 0):.1f} s.", "",
              "## Summary", "", _table(["figure", "value"], _summary_rows(result)), ""]
    if result.calibration:
        rows = [[name, f"{_f(p['accuracy'])} [{_f(p['accuracy_ci95'][0])}, {_f(p['accuracy_ci95'][1])}]",
                 _f(p["seconds_per_token"] * 1e3, ".4f"), p["max_tokens"], p["bits_per_output"], p["steps"], p["samples"]]
                for name, p in result.calibration["profiles"].items()]
        lines += ["## Calibration", "", "Measured by this run with `incentive backend calibrate`'s function and defaults "
                  f"(files in `{result.calibration['folder']}/`, the calibrated scenario `{result.calibration['scenario']}`).", "",
                  _table(["model", "accuracy [95% CI] (1 trial, perfect link)", "ms per token (unit compute)", "tokens",
                          "bits per output", "steps", "requests"], rows), ""]
    lines += ["## Market <-> provisioning rounds", "",
              "Each round the market prices the trials and BERs provisioning chose (best-of-N accuracy from the "
              "measured tables, N-fold compute and payload), then provisioning re-decides every slot at the new "
              "rewards and allocations.", "",
              _table(["round", "market", "users changing trials", "users held after a cycle",
                      "largest priced-accuracy move", "largest reward move"],
                     [[r["round"], r["market_status"], r["users_changing_trials"], r["users_held"],
                       _f(r["max_accuracy_change"], ".4f"), _f(r["max_reward_change"], ".3g")] for r in result.rounds]), "",
              "A user caught in a 2-cycle (priced a, b, a and deciding b again) is "
              "held at the trials the market last priced; its provisioning decision at the final equilibrium is in "
              "`result.json` (`rounds[-1].trials_decided`).", ""]
    lines += ["## Modelled vs measured QoE per user", "",
              "Modelled: the market's QoE at the equilibrium, with the user's trials priced (best-of-N accuracy at its "
              "trials and BER, N generations of compute, N outputs sent). Measured: the same formula "
              "(`market.qoe.qoe_formula`) on the backend's measured accuracy (judge, best of the user's trials, after "
              "the noisy link), tokens and latency (compute at unit compute / allotted compute + transmission of every "
              "trial's bits at the allotted rate). *noise*: the 95% half-width of the gap from sampling (measured and "
              "calibrated accuracy, compute time); *model error*: the gap beyond it."
              + (f" The first {MAX_USERS_LISTED} of {len(result.users)} users are listed; all are in `users.csv`."
                 if len(result.users) > MAX_USERS_LISTED else ""), "",
              _table(["MU", "ASP", "trials", "power W", "BER", "accuracy model / measured [CI]", "tokens model / measured",
                      "latency ms model / measured", "QoE model", "QoE measured [CI]", "gap", "noise", "model error"],
                     _user_rows_md(result)), "",
              "![modelled vs measured QoE](qoe_per_user.png)", "", "![reward vs QoE](reward_vs_qoe.png)", ""]
    rows = [[a["name"], a["model"], a["mus"],
             f"{_f(a['compute_used'], '.3g')} / {_f(a['compute_capacity'], '.3g')}" + (" (binds)" if a["compute_binding"] else ""),
             f"{_f(a['bandwidth_used'], '.3g')} / {_f(a['bandwidth_capacity'], '.3g')}" + (" (binds)" if a["bandwidth_binding"] else ""),
             _f(a["compute_price"], ".4g"), _f(a["bandwidth_price"], ".3g"), _f(a["revenue"], ".4g"),
             _f(a["revenue_measured"], ".4g"), _f(a["cost"], ".4g"), _f(a["profit"], ".4g"),
             _f(a["mean_qoe_modelled"]), _f(a["mean_qoe_measured"]), a["trials_total"], _f(a["power_w_total"], ".3g")]
            for a in result.asps]
    lines += ["## Per ASP: resource use, payments, profit, QoE", "",
              _table(["ASP", "model", "MUs", "compute used / cap", "bandwidth used / cap (Hz)", "compute price",
                      "bandwidth price", "revenue (model)", "revenue (measured QoE)", "cost", "profit (model)",
                      "mean QoE model", "mean QoE measured", "trials", "power W"], rows), "",
              "![resource use per ASP](resources_per_asp.png)", ""]
    rows = [[u["name"], _f(u["reward"], ".4g"), _f(u["value_per_qoe"], ".4g"), _f(u["modelled"]["payment"], ".4g"),
             _f(u["measured"]["payment"], ".4g"), _f(u["modelled"]["utility"], ".4g"), _f(u["measured"]["utility"], ".4g"),
             _f(u["compute"], ".3g"), _f(u["bandwidth"], ".3g")] for u in result.users[:MAX_USERS_LISTED]]
    lines += ["## Per user: payments and utilities", "",
              "Payment `r_m Q_m` and utility `(theta_m - r_m) Q_m`, at the modelled and at the measured QoE.", "",
              _table(["MU", "reward", "value per QoE", "payment model", "payment measured", "utility model",
                      "utility measured", "compute", "bandwidth Hz"], rows), ""]
    lines += _slot_lines(result)
    lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += ["## Files", "", "`result.json` (everything, schema version "
              f"{result.schema_version}), `users.csv`, `asps.csv`, `slots.csv`, `config.json` (the pipeline configuration), "
              + ", ".join(f"`{p}`" for p in plots) + (", `calibration/`" if result.calibration else "") + ".", ""]
    return "\n".join(lines)


#: Most slots listed in report.md (all of them are in slots.csv and result.json).
MAX_SLOTS_LISTED = 50


def _slot_lines(result) -> list[str]:
    shown = result.slots[:MAX_SLOTS_LISTED]
    rows = [[s_["slot"], ", ".join(s_["users"]), s_["method"], s_["max_trials"], _f(s_["p_total_w"], ".3g"),
             " ".join(str(t) for t in s_["trials"]), " ".join(_f(p, ".3f") for p in s_["power_w"]),
             _f(s_["utility"], ".4f"), _f(s_["oracle_utility"], ".4f"), _f(s_["policy_utility"], ".4f"),
             _f(s_["fraction_of_oracle"], ".3f")] for s_ in shown]
    users = {u["name"]: u for u in result.users}
    states = [[u["name"], u["provisioning"]["slot"], _f(u["reward"], ".4g"), _f(u["provisioning"]["weight"], ".3f"),
               _f(u["provisioning"]["distance_derived_m"], ".0f") + (" (clipped to " + _f(u["provisioning"]["distance_m"], ".0f") + ")"
                                                                   if u["provisioning"]["distance_clipped"] else ""),
               _f(u["provisioning"]["difficulty"], ".2f"), _f(u["provisioning"]["quality_threshold"], ".2f"),
               _f(u["provisioning"]["provisioning_qoe"], ".3f")]
              for s_ in shown for u in (users[n] for n in s_["users"])]
    more = len(result.slots) - len(shown)
    return ["## Provisioning slots", "",
            f"Each ASP serves its users in slots of Q = {max((s_['size'] for s_ in result.slots), default='-')} "
            "(the provisioning scenario's `num_users`; the last slot of an ASP may be partial). Utility: the "
            "provisioning objective (eq. (22a) with penalties, expected) of the chosen allocation; D3PG/oracle: the "
            "policy's utility as a fraction of the exact optimum's in the same slot (only where the optimum is positive)."
            + (f" The first {len(shown)} of {len(result.slots)} slots are listed; all are in `slots.csv`." if more else ""), "",
            _table(["slot", "users", "method", "N_max", "P_total W", "trials", "power W", "utility", "oracle utility",
                    "D3PG utility", "D3PG / oracle"], rows), "",
            "Users' provisioning states (derived deterministically from the scenario and the seed; see docs/pipeline.md):", "",
            _table(["MU", "slot", "reward", "weight in slot", "distance m", "difficulty", "quality threshold",
                    "provisioning QoE (expected)"], states), ""]


def standard_notes(notes: list, config, inputs, setup, slots: list, users: list) -> None:
    """Append the plain-language notes every run report carries (choices and anything unusual)."""
    if inputs.uncalibrated:
        notes.append("The scenario is not calibrated (" + "; ".join(inputs.uncalibrated[:3]) + "): without "
                     "best-of-N accuracy tables the market prices each user's N-fold compute and payload but keeps "
                     f"the ASP's one-trial accuracy. Calibrate it: {calibrate_command(str(inputs.path))}.")
    if setup.policy is not None:
        notes.append(f"Provisioning: the D3PG policy ({inputs.policy_file}) decides each full slot of Q = {setup.q} "
                     + (f"users (best of {setup.best_of_k} samples ranked by its critic), " if (setup.best_of_k or 1) > 1
                        else "users (one seeded sample), ")
                     + "all slots in one batched call. It observes the users' difficulty, distance, threshold, channel "
                       "gain and the power budget, not their weights or time per trial; the oracle (its yardstick in "
                       "every slot) sees everything.")
    else:
        notes.append(f"Provisioning: the exact oracle decides every slot (Q = {setup.q} users per slot); no D3PG/oracle "
                     "ratio is reported.")
    partial = [s for s in slots if s.partial]
    if partial:
        how = ("the exact oracle on the k-user problem" if config.partial_slot == "oracle" or setup.policy is None else
               "the policy with padding users of weight 0 whose allocation is discarded")
        notes.append(f"{len(partial)} slot(s) had fewer than Q = {setup.q} users ({', '.join(s.slot for s in partial[:10])}"
                     f"{', ...' if len(partial) > 10 else ''}); they were provisioned by {how}.")
    if setup.quality_models:
        notes.append("Provisioning's quality model is the calibrated models' measured quality tables (scorer "
                     "probability p on the 0-10 scale as 10 p); users' difficulties are drawn in the measured range.")
    notes.append("Per-user weights are the market rewards divided by their slot mean (the policy was trained with "
                 "unit weights; the ratio between users is the market's).")
    for key, text in (("distance_clipped", "had a derived distance outside the policy's trained range and were placed at its edge"),
                      ("late", "were late at one trial (market latency >= deadline)"),
                      ("no_resources", "got no compute or bandwidth from the market (zero timeliness weight)")):
        names = [u.name for u in users if u.provisioning[key]]
        if names:
            notes.append(f"{len(names)} user(s) {text}: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}.")

def write_report(result: dict, out_dir: str | Path) -> list[str]:
    """Write report.md, CSVs, plots and config.json into ``out_dir`` from the ``result.json``
    form of a run; return the file names."""
    result = SimpleNamespace(**result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    atomic_write_text(out / "users.csv", csv_text(USER_COLUMNS, user_rows(result.users)))
    atomic_write_text(out / "asps.csv", csv_text(ASP_COLUMNS, [[a.get(c) for c in ASP_COLUMNS] for a in result.asps]))
    atomic_write_text(out / "slots.csv", csv_text(SLOT_COLUMNS, [_slot_row(s) for s in result.slots]))
    files += ["users.csv", "asps.csv", "slots.csv"]
    atomic_write_json(out / "config.json", result.config)
    files.append("config.json")
    plots = _plots(result, out)
    files += plots
    atomic_write_text(out / "report.md", render_markdown(result, plots))
    files.append("report.md")
    return files
