"""Run every measured effect of a scene model and write JSON + plots: ``python -m provisioning.backend.scenes.report``.

What this module is for: reproduce the numbers of docs/backend.md's scenes section in one
command: attribute match on fully specified prompts (with and without the negative prompt
"blurry, noisy, cluttered"), the wording effect, the shared-denoising grid (leak of the
server's prompt into device 2 over ``t0`` and ``tk``) and the BER curve of the latent link,
the unstated attributes against the prior, the device energy at equal QoE (from the shared
grid), and a sample grid, written atomically to ``OUT/scenes_report.json`` with
``shared_leak.png``, ``ber_curve.png`` and ``samples.png``.

Example::

    nice -n 5 python -m provisioning.backend.scenes.report --model scenes-large --out runs/scenes-report

May import: numpy, torch, matplotlib, ``market`` (atomic IO), this package.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NEGATIVE_PROMPT = "blurry, noisy, cluttered"


def run_report(model_name: str, out: Path, samples: int, seed: int, parts: list[str], log=print,
               steps: int = 20) -> dict:
    """Run the chosen parts (match, wording, shared, ber) and write the JSON and plots."""
    import torch

    from market.atomic import atomic_write_json

    from .experiments import (attribute_match, ber_threshold, device_energy_at_equal_qoe, shared_denoising,
                              unspecified_prior, wording_effect)
    from .generator import load_scene_model
    from .judge import load_judge

    torch.set_num_threads(1)
    model = load_scene_model(model_name, device=None)
    judge = load_judge(str(model.device))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scenes_report.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.update({"model": model.name, "device": str(model.device), "seed": seed, "samples": samples})
    timings = report.setdefault("cpu_s", {})
    jobs = {"match": lambda: attribute_match(model, judge, samples=samples, seed=seed, steps=steps),
            "match_negative": lambda: attribute_match(model, judge, samples=samples, seed=seed, steps=steps,
                                                      negative_prompt=NEGATIVE_PROMPT),
            "wording": lambda: wording_effect(model, judge, intents=samples // 2, repeats=2, seed=seed, steps=steps),
            "prior": lambda: unspecified_prior(model, judge, samples=samples, seed=seed, steps=steps),
            "shared": lambda: shared_denoising(model, judge, t0_grid=(0, 4, 8, 12), tk_grid=(4, 8, 12, 16, 20),
                                               samples=samples // 2, seed=seed),
            "energy": lambda: {device: device_energy_at_equal_qoe(report["shared"], reference_steps=20, device=device)
                               for device in ("device1", "device2")},
            "ber": lambda: ber_threshold(model, judge, samples=samples // 2, seed=seed),
            "grid": lambda: sample_grid(model, out / "samples.png", seed=seed)}
    for part in parts:
        begin = time.process_time()
        report[part] = jobs[part]()
        timings[part] = round(time.process_time() - begin, 1)
        atomic_write_json(path, report)
        log(f"[report] {part} done in {timings[part]} CPU s")
    _plots(report, out)
    return report


GRID_PROMPTS: tuple[str, ...] = (
    "A grassland in daylight, with one large red ball in the centre",
    "An ocean at dusk, with two small yellow boxes on the left",
    "A desert at night, with three large white stars on the right",
    "A city in daylight, with one large blue car on the left",
    "A snowfield at dusk, with two large green trees on the right",
    "A forest at night, with one large orange house in the centre",
    "A grassland, with a ball",
    "A city, with a car",
)


def sample_grid(model, path: Path, seed: int = 0, per_prompt: int = 6) -> dict:
    """Rows of samples per prompt (one row per prompt in ``GRID_PROMPTS``) next to a render of it."""
    import numpy as np
    from PIL import Image

    from .generator import generate_scenes
    from .render import from_model_space, render
    from .world import parse

    rows = []
    for p in GRID_PROMPTS:
        images, _ = generate_scenes(model, [p] * per_prompt, seed=seed)
        d = parse(p).description
        from dataclasses import replace

        filled = replace(d, **{k: v for k, v in dict(count="one", size="large", position="centre", lighting="day",
                                                    degradation="none", colour="red").items()
                               if getattr(d, k) is None})
        reference = render(filled, 0) if _complete(d) else np.zeros((32, 32, 3), np.uint8)
        rows.append(np.concatenate([reference, np.full((32, 4, 3), 255, np.uint8),
                                    *from_model_space(images)], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)
    return {"file": str(path), "prompts": list(GRID_PROMPTS), "first_column": "a render of the prompt (unstated "
            "attributes filled: count one, size large, position centre, day, clean, red)"}


def _complete(d) -> bool:
    return d.scene is not None and d.object is not None


def _plots(report: dict, out: Path) -> None:
    from market.atomic import headless_pyplot

    plt = headless_pyplot()

    if "shared" in report:
        rows = report["shared"]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        for tk in sorted({r["tk"] for r in rows}):
            sel = sorted([r for r in rows if r["tk"] == tk], key=lambda r: r["t0"])
            t0 = [r["t0"] for r in sel]
            leak = [r["leak_to_server_prompt"]["rate"] for r in sel]
            err = [[v - r["leak_to_server_prompt"]["ci95"][0] for v, r in zip(leak, sel)],
                   [r["leak_to_server_prompt"]["ci95"][1] - v for v, r in zip(leak, sel)]]
            axes[0].errorbar(t0, leak, yerr=err, marker="o", capsize=3, label=f"t_k = {tk}")
            own = [r["device2_own_colour"]["rate"] for r in sel]
            axes[1].plot(t0, own, marker="o", label=f"t_k = {tk}")
        axes[0].set_xlabel("server steps t_0 (prompt 1)")
        axes[0].set_ylabel("device 2 shows prompt 1's colour")
        axes[1].set_xlabel("server steps t_0 (prompt 1)")
        axes[1].set_ylabel("device 2 shows its own colour")
        for ax in axes:
            ax.legend()
            ax.set_ylim(-0.02, 1.02)
        fig.suptitle(f"{report['model']}: shared denoising (Fig. 9 analogue)")
        fig.tight_layout()
        fig.savefig(out / "shared_leak.png", dpi=110)
        plt.close(fig)
    if "ber" in report:
        rows = sorted(report["ber"], key=lambda r: r["ber"])
        fig, ax = plt.subplots(figsize=(5, 3.4))
        x = [max(r["ber"], 3e-5) for r in rows]
        acc = [r["accuracy_device1"]["rate"] for r in rows]
        err = [[a - r["accuracy_device1"]["ci95"][0] for a, r in zip(acc, rows)],
               [r["accuracy_device1"]["ci95"][1] - a for a, r in zip(acc, rows)]]
        ax.errorbar(x, acc, yerr=err, marker="o", capsize=3, label="whole intent")
        if "device1_scene" in rows[0]:
            ax.plot(x, [r["device1_scene"]["rate"] for r in rows], marker="s", label="scene only")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("BER of the 8-bit latent link (0 plotted at 3e-5)")
        ax.set_ylabel("device 1 intent match")
        ax.set_title(f"{report['model']}: t_0 = {rows[0]['t0']}, t_k = {rows[0]['tk']} (Fig. 8 analogue)")
        fig.tight_layout()
        fig.savefig(out / "ber_curve.png", dpi=110)
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provisioning.backend.scenes.report",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="scenes-large")
    parser.add_argument("--out", default="runs/scenes-report")
    parser.add_argument("--samples", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps of the match and wording parts")
    parser.add_argument("--parts", nargs="+",
                        default=["match", "match_negative", "prior", "wording", "shared", "energy", "ber", "grid"])
    args = parser.parse_args(argv)
    report = run_report(args.model, Path(args.out), args.samples, args.seed, args.parts,
                        log=lambda m: print(m, file=sys.stderr, flush=True), steps=args.steps)
    print(json.dumps({k: v for k, v in report.items() if k not in ("shared", "ber")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
