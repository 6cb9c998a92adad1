"""Assemble ``incentive run``'s typed records from the market answer, the slots and the measurements.

What this module is for: the "assemble typed records" step of :func:`incentive.pipeline.run_pipeline`.
Per user, the measured QoE is the market's own formula (:func:`market.qoe.qoe_formula`) on the
measured accuracy, tokens and latency; the gap (measured - modelled) is split into what sampling
explains (the 95% interval of the gap: the measured accuracy's and the calibrated accuracy's
binomial intervals and the compute time's interval, combined in quadrature) and the *model
error* beyond it. Per ASP, the market's figures and whether each capacity binds. The summary
holds the headline figures, including the D3PG/oracle ratio with the slots it leaves out and why.
The records are ``provisioning.coupling``'s (they define ``result.json``).

May import: numpy, ``market``, ``provisioning`` (the records and the backend's statistics).
"""
from __future__ import annotations

import math

import numpy as np

from market.qoe import qoe_formula
from provisioning.backend.stats import wilson_interval
from provisioning.coupling import AspRecord, QoERecord, SlotRecord, UserRecord

#: Relative slack under which a resource counts as used up to its capacity (binding).
BINDING_RTOL = 1e-6


def _finite_or_none(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def _max_abs(values) -> float | None:
    vals = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    return float(max(vals)) if vals else None


def _qoe_record(parts, m: int, accuracy: float, tokens: float, latency: float, reward: float, theta: float) -> QoERecord:
    total = float(parts.total[m])
    return QoERecord(qoe=total, qoe_accuracy=float(parts.accuracy[m]), qoe_tokens=float(parts.tokens[m]),
                     qoe_timeliness=float(parts.timeliness[m]), accuracy=float(accuracy), tokens=float(tokens),
                     latency_s=float(latency), payment=reward * total, utility=(theta - reward) * total)


def user_records(result, slots, decisions, measurements, models: dict, trials, power, ber,
                 calibration_samples: dict) -> list[UserRecord]:
    """One :class:`UserRecord` per MU (market order).

    ``measurements[m]`` is MU m's ``GroupMeasurement`` (one BER); ``calibration_samples`` maps a
    model to the requests behind each cell of its accuracy table (absent: not calibrated).
    """
    from market.qoe import qoe_parts, transmission_rate

    mk, resp = result.market, result.response
    rate = transmission_rate(mk, resp.bandwidth)
    modelled = qoe_parts(mk, resp.compute, resp.bandwidth)
    slot_of = {m: (s, d, j) for s, d in zip(slots, decisions) for j, m in enumerate(s.mus)}
    accuracy = np.array([measurements[m].outcomes[0].accuracy for m in range(mk.n_mus)])
    tokens = np.array([float(measurements[m].tokens) for m in range(mk.n_mus)])
    compute = np.array([measurements[m].mean_compute_s for m in range(mk.n_mus)])
    bits = np.array([trials[m] * measurements[m].bits_per_output for m in range(mk.n_mus)], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        transmission = np.where(rate > 0, bits / np.where(rate > 0, rate, 1.0), np.inf)
        latency = np.where(resp.compute > 0, compute / np.where(resp.compute > 0, resp.compute, 1.0), np.inf) + transmission
    weights = (mk.weight_accuracy, mk.weight_tokens, mk.weight_timeliness)
    measured = qoe_formula(*weights, accuracy, tokens, mk.tokens_requested, latency, mk.deadline_s)
    users = []
    for m in range(mk.n_mus):
        meas, (spec, decision, j) = measurements[m], slot_of[m]
        model = models.get(mk.asp_names[mk.mu_asp[m]])
        f_m, w = float(resp.compute[m]), tuple(float(x[m]) for x in weights)
        acc_lo, acc_hi = meas.outcomes[0].accuracy_ci95
        comp_lo, comp_hi = meas.compute_ci95(seed=m)
        lat_lo, lat_hi = ((c / f_m + transmission[m]) if f_m > 0 else math.inf for c in (comp_lo, comp_hi))
        q_lo = float(qoe_formula(*w, acc_lo, tokens[m], mk.tokens_requested[m], lat_hi, mk.deadline_s[m]).total)
        q_hi = float(qoe_formula(*w, acc_hi, tokens[m], mk.tokens_requested[m], lat_lo, mk.deadline_s[m]).total)
        reward, theta = float(result.rewards[m]), float(mk.value_per_qoe[m])
        mod = _qoe_record(modelled, m, mk.accuracy_received[m], mk.tokens_delivered[m], modelled.latency_s[m], reward, theta)
        mea = _qoe_record(measured, m, accuracy[m], tokens[m], latency[m], reward, theta)
        gap = mea.qoe - mod.qoe if math.isfinite(mea.qoe) and math.isfinite(mod.qoe) else None
        n_cal = calibration_samples.get(model)
        h_cal = 0.0
        if n_cal:
            lo, hi = wilson_interval(int(round(mod.accuracy * n_cal)), int(n_cal))
            h_cal = (hi - lo) / 2
        h_lat = (comp_hi - comp_lo) / 2 / f_m if f_m > 0 else 0.0
        noise = math.sqrt((w[0] * (acc_hi - acc_lo) / 2) ** 2 + (w[0] * h_cal) ** 2
                          + (w[2] * h_lat / float(mk.deadline_s[m])) ** 2)
        error = None if gap is None else math.copysign(max(0.0, abs(gap) - noise), gap)
        users.append(UserRecord(
            name=mk.mu_names[m], asp=mk.asp_names[mk.mu_asp[m]], model=model, reward=reward, value_per_qoe=theta,
            weights={"accuracy": w[0], "tokens": w[1], "timeliness": w[2]}, compute=f_m,
            bandwidth=float(resp.bandwidth[m]), link_rate_bps=float(rate[m]), deadline_s=float(mk.deadline_s[m]),
            tokens_requested=float(mk.tokens_requested[m]),
            provisioning={"slot": spec.name, "slot_method": decision.method, "weight": float(spec.config.objective.user_weights[j]),
                          "trials": int(trials[m]), "power_w": float(power[m]), "ber": float(ber[m]),
                          **{k: spec.derived[j][k] for k in ("distance_m", "distance_derived_m", "distance_clipped",
                                                              "difficulty", "quality_threshold")},
                          "provisioning_qoe": float(decision.expected_qoe[j]),
                          "late": j in spec.latency["late_users"], "no_resources": j in spec.latency["no_resource_users"]},
            modelled=mod,
            measurement={"samples": meas.group.samples, "accuracy": float(accuracy[m]), "accuracy_ci95": [acc_lo, acc_hi],
                         "accuracy_no_channel": float(np.mean(meas.correct_no_channel)) if meas.correct_no_channel else None,
                         "tokens": int(meas.tokens), "bits_per_output": int(meas.bits_per_output), "bits_sent": float(bits[m]),
                         "observed_ber": meas.outcomes[0].bits_flipped / max(1.0, bits[m] * meas.group.samples),
                         "compute_s": float(compute[m]), "compute_ci95": [comp_lo, comp_hi],
                         "seconds_per_token": meas.seconds_per_token, "transmission_s": float(transmission[m]),
                         "latency_s": float(latency[m]), "latency_ci95": [lat_lo, lat_hi], "steps": meas.steps},
            measured=mea, measured_qoe_ci95=[q_lo, q_hi], qoe_gap=gap, qoe_gap_noise=noise, qoe_gap_model_error=error,
            qoe_gap_parts={"accuracy": mea.qoe_accuracy - mod.qoe_accuracy, "tokens": mea.qoe_tokens - mod.qoe_tokens,
                           "timeliness": _finite_or_none(mea.qoe_timeliness - mod.qoe_timeliness)}))
    return users


def asp_records(result, users: list[UserRecord], models: dict) -> list[AspRecord]:
    """One :class:`AspRecord` per ASP, with binding capacities and the measured QoE of its MUs."""
    records = []
    for row in result.to_dict()["asps"]:
        mine = [u for u in users if u.asp == row["name"]]
        binds = lambda used, cap: used is not None and used >= cap * (1 - BINDING_RTOL)  # noqa: E731
        known = ("name", "compute_price", "bandwidth_price", "compute_used", "compute_capacity", "bandwidth_used",
                 "bandwidth_capacity", "revenue", "cost", "profit")
        records.append(AspRecord(
            name=row["name"], model=models.get(row["name"]), mus=len(mine), compute_price=row.get("compute_price"),
            bandwidth_price=row.get("bandwidth_price"), compute_used=row.get("compute_used"),
            compute_capacity=row["compute_capacity"], compute_binding=binds(row.get("compute_used"), row["compute_capacity"]),
            bandwidth_used=row.get("bandwidth_used"), bandwidth_capacity=row["bandwidth_capacity"],
            bandwidth_binding=binds(row.get("bandwidth_used"), row["bandwidth_capacity"]),
            revenue=row.get("revenue"), cost=row.get("cost"), profit=row.get("profit"),
            revenue_measured=float(sum(u.measured.payment for u in mine if math.isfinite(u.measured.payment))),
            mean_qoe_modelled=_mean([u.modelled.qoe for u in mine]), mean_qoe_measured=_mean([u.measured.qoe for u in mine]),
            trials_total=int(sum(u.provisioning["trials"] for u in mine)),
            power_w_total=float(sum(u.provisioning["power_w"] for u in mine)),
            extra={k: v for k, v in row.items() if k not in known}))
    return records


def policy_headline(slots: list[SlotRecord], provision: str) -> dict | None:
    """D3PG utility / oracle utility over the slots where it is meaningful, and what it leaves out.

    ``None`` with ``--provision oracle`` (no D3PG decision to headline). A ratio of sums over the
    slots where the policy decided and the optimum is positive; every other slot is counted in
    ``left_out`` with its reason (a partial slot decided by the oracle; an optimum <= 0, where a
    ratio means nothing).
    """
    if provision != "d3pg":
        return None
    ran = [s for s in slots if s.policy_utility is not None]
    counted = [s for s in ran if s.oracle_utility > 0]
    reasons = {}
    partial = len(slots) - len(ran)
    if partial:
        reasons["partial slot decided by the oracle (the policy has a fixed number of users)"] = partial
    if len(ran) - len(counted):
        reasons["optimum <= 0 (a ratio of a non-positive optimum means nothing)"] = len(ran) - len(counted)
    return {
        "ratio": (sum(s.policy_utility for s in counted) / sum(s.oracle_utility for s in counted)) if counted else None,
        "slots_counted": len(counted), "slots_left_out": len(slots) - len(counted), "left_out": reasons,
        "mean_utility_below_oracle": _mean([s.oracle_utility - s.policy_utility for s in ran]),
        "worst_slot_fraction": min((s.fraction_of_oracle for s in counted), default=None),
    }


def summarise(result, users: list[UserRecord], asps: list[AspRecord], slots: list[SlotRecord], provision: str,
              rounds: list, converged: bool, certified: bool, held: list | None = None) -> dict:
    """The headline figures (``result.json``'s ``summary``)."""
    mk = result.market
    gaps = [u.qoe_gap for u in users if u.qoe_gap is not None]
    errors = [u.qoe_gap_model_error for u in users if u.qoe_gap_model_error is not None]
    rewards = np.asarray(result.rewards)
    at_floor = np.isclose(rewards, mk.reward_min, rtol=1e-6, atol=0)
    at_cap = np.isclose(rewards, mk.reward_max, rtol=1e-6, atol=0)
    trials = [u.provisioning["trials"] for u in users]
    return {
        "users": len(users), "asps": len(asps), "slots": len(slots),
        "mean_abs_qoe_gap": _mean([abs(g) for g in gaps]), "max_abs_qoe_gap": _max_abs(gaps),
        "mean_qoe_gap": _mean(gaps), "mean_qoe_gap_noise": _mean([u.qoe_gap_noise for u in users]),
        "users_gap_within_noise": int(sum(1 for e in errors if e == 0.0)),
        "mean_abs_model_error": _mean([abs(e) for e in errors]), "max_abs_model_error": _max_abs(errors),
        "mean_abs_gap_by_part": {p: _mean([abs(u.qoe_gap_parts[p]) for u in users if u.qoe_gap_parts[p] is not None])
                                 for p in ("accuracy", "tokens", "timeliness")},
        "mean_qoe_modelled": _mean([u.modelled.qoe for u in users]),
        "mean_qoe_measured": _mean([u.measured.qoe for u in users]),
        "tokens_measured_equal_modelled": all(u.measurement["tokens"] == u.modelled.tokens for u in users),
        "rounds": len(rounds), "converged": bool(converged), "held_users": list(held or []),
        "rewards_interior": int(np.sum(~at_floor & ~at_cap)), "rewards_at_floor": int(np.sum(at_floor)),
        "rewards_at_cap": int(np.sum(at_cap)),
        "binding_capacities": [f"{a.name}.{r}" for a in asps for r in ("compute", "bandwidth")
                               if getattr(a, f"{r}_binding")],
        "trials_distribution": {str(t): trials.count(t) for t in sorted(set(trials))},
        "power_w_range": [min((u.provisioning["power_w"] for u in users), default=None),
                          max((u.provisioning["power_w"] for u in users), default=None)],
        "policy_vs_oracle": policy_headline(slots, provision),
        "market_status": result.status, "certified": bool(certified),
    }
