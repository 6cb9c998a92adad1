"""The measured effects of the scene backend: specified attributes, wording, shared denoising, bit errors.

What this module is for: the experiments that docs/backend.md reports, each a function of a
loaded model and judge returning JSON-ready rows with 95% intervals:

* :func:`attribute_match` - prompts that state every attribute; per-attribute match rate;
* :func:`wording_effect` - a hidden intent (scene, object and two more attributes) requested
  with the raw prompt ``"A [scene], with [object]"`` and with the enriched caption of the
  intent (Liu et al., "Intelligent Mobile AI-Generated Content Services via Interactive Prompt
  Engineering and Dynamic Service Provisioning", section IV); intent-match rate of each and
  their ratio with a bootstrap interval;
* :func:`shared_denoising` - shared denoising of Du et al., "User-Centric Interactive AI for
  Distributed Diffusion Model-based AI-Generated Content", sections 3-5, Figs. 8-9: a server runs ``t0`` steps under prompt 1, the 8-bit latent
  crosses a link at a BER, device 1 (prompt 1) and device 2 (prompt 1 with another colour
  or object) finish ``tk`` steps each; accuracy per device, the leak of prompt 1 into
  device 2, and the device steps saved;
* :func:`unspecified_prior` - raw prompts: the judged distribution of each unstated attribute
  against the prior, with the total-variation distance that sampling alone gives;
* :func:`device_energy_at_equal_qoe` - from the shared-denoising rows: the fewest device steps
  (and device CPU seconds) at which a device keeps the QoE of running all steps itself (the
  distributed-diffusion paper's 20-40% energy claim).

May import: numpy, torch, ``..channel``, ``..sampling`` (seeds), ``..stats``, this package.
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..channel import transmit_latent
from ..sampling import request_seed
from ..stats import bootstrap_mean_interval, wilson_interval
from .generator import SceneModel, denoise_scenes, from_latent, scene_noise
from .judge import SceneJudge
from .measure import generate_requests, matches
from .world import (ATTRIBUTES, COLOURS, OBJECTS, RAW_ATTRIBUTES, VOCABULARY, SceneDescription, caption,
                    raw_prompt, sample_description)

#: Attributes a fully specified test prompt states (degradation is asked "clean").
_PROMPT_ATTRIBUTES = ("scene", "object", "colour", "count", "size", "position", "lighting")


def _rate(hits) -> dict:
    hits = np.asarray(hits, dtype=bool)
    low, high = wilson_interval(int(hits.sum()), int(hits.size))
    return {"rate": round(float(hits.mean()), 4), "ci95": [round(low, 4), round(high, 4)], "n": int(hits.size)}


def _clean(d: SceneDescription) -> SceneDescription:
    return replace(d, degradation="none")


def attribute_match(model: SceneModel, judge: SceneJudge, samples: int = 96, steps: int = 20, seed: int = 0,
                    guidance_scale: float | None = None, negative_prompt: str = "", batch_size: int = 32) -> dict:
    """Prompts stating every attribute (and "clean"); judged match per attribute and for all at once."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 101]))
    descriptions = [_clean(sample_description(rng)) for _ in range(samples)]
    prompts = [caption(d) for d in descriptions]
    images, cpu_s, _ = generate_requests(model, prompts, 1, steps, seed, guidance_scale, negative_prompt, batch_size)
    reading = judge.read(images[:, 0])
    per_attr = {}
    all_hits = np.ones(samples, dtype=bool)
    for attr in _PROMPT_ATTRIBUTES + ("degradation",):
        hit = np.array([reading.labels[attr][i] == getattr(d, attr) for i, d in enumerate(descriptions)])
        per_attr[attr] = _rate(hit)
        if attr in _PROMPT_ATTRIBUTES:
            all_hits &= hit
    return {"model": model.name, "steps": steps, "guidance_scale": guidance_scale or model.guidance_scale,
            "negative_prompt": negative_prompt, "seed": seed, "attributes": per_attr, "all_attributes": _rate(all_hits),
            "cpu_s_per_image": round(cpu_s / samples, 4), "example_prompt": prompts[0]}


def hidden_intents(count: int, seed: int, extra: int = 2) -> list[SceneDescription]:
    """Intents stating scene, object and ``extra`` random further attributes (no degradation)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 202]))
    optional = [a for a in _PROMPT_ATTRIBUTES if a not in RAW_ATTRIBUTES]
    out = []
    for _ in range(count):
        full = sample_description(rng)
        keep = set(RAW_ATTRIBUTES) | {optional[i] for i in rng.choice(len(optional), size=extra, replace=False)}
        out.append(SceneDescription(**{a: getattr(full, a) for a in ATTRIBUTES if a in keep}))
    return out


def wording_effect(model: SceneModel, judge: SceneJudge, intents: int = 48, repeats: int = 2, steps: int = 20,
                   seed: int = 0, guidance_scale: float | None = None, batch_size: int = 32) -> dict:
    """Intent-match rate of the raw prompt vs the enriched caption of the same hidden intents."""
    wanted = hidden_intents(intents, seed)
    requests = [w for w in wanted for _ in range(repeats)]
    out = {}
    hits_by_wording = {}
    for wording, make in (("raw", raw_prompt), ("enriched", caption)):
        prompts = [make(w) for w in requests]
        images, _, _ = generate_requests(model, prompts, 1, steps, seed, guidance_scale, "", batch_size)
        reading = judge.read(images[:, 0])
        hits = np.array([matches(_one(reading, i), w.specified()).all() for i, w in enumerate(requests)])
        hits_by_wording[wording] = hits
        out[wording] = {**_rate(hits), "example_prompt": prompts[0]}
    raw, enriched = hits_by_wording["raw"].astype(float), hits_by_wording["enriched"].astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(raw), size=(2000, len(raw)))
    boot_raw, boot_enriched = raw[idx].mean(1), enriched[idx].mean(1)
    ok = boot_raw > 0  # the ratio is undefined where a resample has no raw match
    ratios = boot_enriched[ok] / boot_raw[ok]
    out["ratio_enriched_over_raw"] = {
        "ratio": round(float(enriched.mean() / raw.mean()), 3) if raw.mean() > 0 else None,
        "ci95_bootstrap": ([round(float(np.quantile(ratios, 0.025)), 3), round(float(np.quantile(ratios, 0.975)), 3)]
                           if ok.mean() > 0.9 else None),
        "note": "null when the raw prompt matched too rarely for a ratio (see the rates and the difference)"}
    out["difference"] = {"mean": round(float(enriched.mean() - raw.mean()), 4),
                         "ci95_bootstrap": [round(float(v), 4) for v in bootstrap_mean_interval(enriched - raw)]}
    out.update({"model": model.name, "intents": intents, "repeats": repeats, "steps": steps, "seed": seed,
                "intent_form": "scene, object and two random attributes among colour/count/size/position/lighting"})
    return out


def _one(reading, i: int):
    """Reading of image ``i`` only."""
    from .judge import JudgeReading

    return JudgeReading(labels={a: [v[i]] for a, v in reading.labels.items()},
                        confidence={a: v[i:i + 1] for a, v in reading.confidence.items()},
                        degradation_score=reading.degradation_score[i:i + 1])


def prompt_pairs(samples: int, seed: int, vary: str = "colour") -> list[tuple[SceneDescription, SceneDescription]]:
    """Server/device-1 intent and a device-2 intent that differs in ``vary`` (colour or object)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 303]))
    pairs = []
    for _ in range(samples):
        d = sample_description(rng)
        base = SceneDescription(scene=d.scene, object=d.object, colour=d.colour, lighting=d.lighting)
        choices = [v for v in (COLOURS if vary == "colour" else OBJECTS) if v != getattr(base, vary)]
        pairs.append((base, replace(base, **{vary: choices[int(rng.integers(len(choices)))]})))
    return pairs


def shared_denoising(model: SceneModel, judge: SceneJudge, t0_grid=(0, 2, 5, 10, 15), tk_grid=(5, 10, 15),
                     ber_grid=(0.0,), samples: int = 48, seed: int = 0, vary: str = "colour",
                     guidance_scale: float | None = None) -> list[dict]:
    """Grid over (t0, tk, BER) of shared denoising; one row per point (see the module docstring)."""
    import torch

    pairs = prompt_pairs(samples, seed, vary)
    p1 = [caption(a) for a, _ in pairs]
    p2 = [caption(b) for _, b in pairs]
    noise = torch.cat([scene_noise(1, request_seed(seed, i), "cpu") for i in range(samples)]).to(model.device)
    rows = []
    for t0 in t0_grid:
        for tk in tk_grid:
            total = t0 + tk
            server = denoise_scenes(model, noise, p1, total, 0, t0, guidance_scale) if t0 > 0 else noise
            for ber in ber_grid if t0 > 0 else (0.0,):
                rng = np.random.default_rng(np.random.SeedSequence([seed, t0, tk, int(ber * 1e6)]))
                if t0 > 0:
                    sent = transmit_latent(server.float().cpu().numpy(), ber, rng=rng)
                    received = torch.as_tensor(sent.values).to(model.device)
                else:
                    received = server
                dev1 = from_latent(denoise_scenes(model, received, p1, total, t0, None, guidance_scale)).clamp(-1, 1)
                device_begin = time.process_time()
                dev2 = from_latent(denoise_scenes(model, received, p2, total, t0, None, guidance_scale)).clamp(-1, 1)
                device_cpu_s = (time.process_time() - device_begin) / samples
                r1, r2 = judge.read(dev1.cpu().numpy()), judge.read(dev2.cpu().numpy())
                acc1 = [matches(_one(r1, i), a.specified()).all() for i, (a, _) in enumerate(pairs)]
                acc2 = [matches(_one(r2, i), b.specified()).all() for i, (_, b) in enumerate(pairs)]
                vary_ok2 = [r2.labels[vary][i] == getattr(b, vary) for i, (_, b) in enumerate(pairs)]
                leak = [r2.labels[vary][i] == getattr(a, vary) for i, (a, _) in enumerate(pairs)]
                scene1 = [r1.labels["scene"][i] == a.scene for i, (a, _) in enumerate(pairs)]
                rows.append({"t0": t0, "tk": tk, "ber": ber, "vary": vary,
                             "accuracy_device1": _rate(acc1), "accuracy_device2": _rate(acc2),
                             "device1_scene": _rate(scene1),
                             "device2_own_" + vary: _rate(vary_ok2), "leak_to_server_prompt": _rate(leak),
                             "device_steps_saved_share": round(t0 / total, 4),
                             "device_cpu_s_per_image": round(device_cpu_s, 4),
                             "two_device_steps_saved_share": round(t0 / (2 * total), 4)})
    return rows


def ber_threshold(model: SceneModel, judge: SceneJudge, ber_grid=(0.0, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.06, 0.1),
                  t0: int = 10, tk: int = 10, samples: int = 48, seed: int = 0) -> list[dict]:
    """Device 1 (same prompt as the server) against the BER of the latent link: Fig. 8's curve."""
    return shared_denoising(model, judge, t0_grid=(t0,), tk_grid=(tk,), ber_grid=ber_grid, samples=samples,
                            seed=seed)


def unspecified_prior(model: SceneModel, judge: SceneJudge, samples: int = 96, steps: int = 20, seed: int = 0,
                      guidance_scale: float | None = None, batch_size: int = 32, reference_draws: int = 2000) -> dict:
    """Raw prompts (scene and object only): judged frequency of each unstated attribute vs the prior.

    The prior of colour, count, size, position and lighting is uniform. ``tv_distance`` is the
    total-variation distance of the judged frequencies from it; ``tv_sampling_p95`` is the 95th
    percentile of the same distance for ``samples`` draws from the prior itself (what sampling
    alone gives), so a distance below it is "near the prior" at this sample size.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 404]))
    descriptions = [sample_description(rng) for _ in range(samples)]
    prompts = [raw_prompt(d) for d in descriptions]
    images, _, _ = generate_requests(model, prompts, 1, steps, seed, guidance_scale, "", batch_size)
    reading = judge.read(images[:, 0])
    out = {}
    for attr in ("colour", "count", "size", "position", "lighting"):
        values = VOCABULARY[attr]
        prior = np.full(len(values), 1.0 / len(values))
        judged = np.array([reading.labels[attr].count(v) for v in values], dtype=float) / samples
        draws = rng.multinomial(samples, prior, size=reference_draws) / samples
        tv_sampling = 0.5 * np.abs(draws - prior).sum(axis=1)
        tv = 0.5 * float(np.abs(judged - prior).sum())
        out[attr] = {"judged": {v: round(float(f), 4) for v, f in zip(values, judged)},
                     "prior": round(float(prior[0]), 4), "tv_distance": round(tv, 4),
                     "tv_sampling_p95": round(float(np.quantile(tv_sampling, 0.95)), 4),
                     "near_prior": bool(tv <= np.quantile(tv_sampling, 0.95))}
    return {"model": model.name, "samples": samples, "steps": steps, "seed": seed, "example_prompt": prompts[0],
            "attributes": out}


def device_energy_at_equal_qoe(rows: list[dict], reference_steps: int, tolerance: float = 0.05,
                               device: str = "device2") -> dict:
    """Device steps and CPU seconds saved by shared denoising at (nearly) the same QoE.

    ``rows`` come from :func:`shared_denoising` with ``t0 = 0`` rows (the device runs every
    step itself) including ``tk = reference_steps``. QoE is the intent-match rate of ``device``:
    ``"device2"`` (its own prompt differs from the server's) or ``"device1"`` (the server's
    prompt). A shared point ``(t0 > 0, tk)`` keeps the QoE when
    its rate is at least the reference rate minus ``tolerance``; the answer is the point with the
    fewest device steps, its saved share of steps ``1 - tk / reference_steps`` and of measured
    device CPU seconds. Because a small model may reach its QoE in fewer than
    ``reference_steps`` on its own, the answer also gives the cheapest device-only schedule that
    keeps the QoE and the saving against it (``saved_vs_cheapest_device_only``): the fair
    comparison.
    """
    reference = [r for r in rows if r["t0"] == 0 and r["tk"] == reference_steps and r["ber"] == 0.0]
    if not reference:
        raise ValueError(f"no device-only row with tk = {reference_steps}")
    ref = reference[0]
    key = f"accuracy_{device}"
    target = ref[key]["rate"] - tolerance
    kept = [r for r in rows if r["t0"] > 0 and r["ber"] == 0.0 and r[key]["rate"] >= target]
    out = {"qoe": f"{device} intent match", "reference_steps": reference_steps,
           "reference_rate": ref[key], "reference_device_cpu_s": ref["device_cpu_s_per_image"],
           "tolerance": tolerance, "points_keeping_qoe": len(kept)}
    alone = [r["tk"] for r in rows if r["t0"] == 0 and r["ber"] == 0.0 and r[key]["rate"] >= target]
    out["cheapest_device_only_steps"] = min(alone)  # the reference itself qualifies
    if not kept:
        out["best"] = None
        return out
    best = min(kept, key=lambda r: (r["tk"], -r[key]["rate"]))
    out["best"] = {"t0": best["t0"], "tk": best["tk"], "rate": best[key],
                   "device_steps_saved_share": round(1 - best["tk"] / reference_steps, 4),
                   "device_cpu_s": best["device_cpu_s_per_image"],
                   "device_cpu_saved_share": round(1 - best["device_cpu_s_per_image"]
                                                   / ref["device_cpu_s_per_image"], 4),
                   "saved_vs_cheapest_device_only": round(1 - best["tk"] / min(alone), 4)}
    return out
