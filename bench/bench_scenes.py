"""Benchmark of the scene models: our guided sampling loop vs the bare diffusers loop, and latency per image.

Both loops run the same UNet2DConditionModel, DDIM scheduler, prompt, negative prompt,
batch and steps, interleaved with rotating order (so load from other processes hits both
alike). The bare loop is the minimal diffusers classifier-free-guidance loop on token
states encoded beforehand (``set_timesteps``; ``unet(cat[x, x], t, states, mask)``; guidance;
``scheduler.step``). Ours is ``provisioning.backend.scenes.generator.generate_scenes``
(seeded noise, cached text encoding, pixel shuffle, clamping, copy to the CPU, CUDA-
synchronised timing). Goal: overhead <= 10%. Also prints seconds per image at each batch.

Usage::

    python bench/bench_scenes.py [--model scenes-large] [--batch 1 16] [--steps 20] [--repeats 5] [--device cpu|cuda]
    python bench/bench_backend.py --model scenes-large ...   (dispatches here)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="scenes-large")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch

    from provisioning.backend.scenes.generator import generate_scenes, load_scene_model, unet_conditioning
    from provisioning.backend.sampling import synchronise as _synchronise

    torch.set_num_threads(args.threads)
    model = load_scene_model(args.model, device=args.device)
    device = model.device
    name = f"cuda ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else f"cpu ({args.threads} thread(s))"
    prompt, negative = "A grassland at dusk, with two red balls on the left", "blurry, noisy, cluttered"
    scale = model.guidance_scale
    rows = []
    for batch in args.batch:
        prompts = [prompt] * batch
        states, mask = model.encoder.encode(prompts + [negative] * batch)
        condition = unet_conditioning(states.to(device), mask.to(device))

        def bare() -> float:
            unet, scheduler = model.unet, model.scheduler
            gen = torch.Generator(device="cpu").manual_seed(0)
            x = torch.randn((batch, 12, 16, 16), generator=gen).to(device)
            _synchronise(device)
            start = time.perf_counter()
            with torch.inference_mode():
                scheduler.set_timesteps(args.steps)
                for t in scheduler.timesteps:
                    eps_c, eps_n = unet(torch.cat([x, x]), t, **condition).sample.chunk(2)
                    x = scheduler.step(eps_n + scale * (eps_c - eps_n), t, x).prev_sample
            _synchronise(device)
            return time.perf_counter() - start

        def ours() -> float:
            start = time.perf_counter()
            generate_scenes(model, prompts, args.steps, seed=0, negative_prompt=negative)
            _synchronise(device)
            return time.perf_counter() - start

        bare(), ours()  # warm-up (and text cache)
        times = {"bare": [], "ours": []}
        order = [("bare", bare), ("ours", ours)]
        for repeat in range(args.repeats):
            shift = repeat % 2
            for key, fn in order[shift:] + order[:shift]:
                times[key].append(fn())
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"batch": batch, "bare_s_per_image": med["bare"] / batch, "ours_s_per_image": med["ours"] / batch,
               "overhead": med["ours"] / med["bare"] - 1.0}
        rows.append(row)
        print(f"batch {batch:3d}: bare {row['bare_s_per_image'] * 1000:.1f} ms/image, ours "
              f"{row['ours_s_per_image'] * 1000:.1f} ms/image, overhead {row['overhead']:+.1%} (goal <= +10%)")
    result = {"device": name, "model": model.name, "parameters": model.parameters, "steps": args.steps,
              "guidance_scale": scale, "unet_calls_per_step": 2, "repeats": args.repeats, "rows": rows,
              "goal_overhead": 0.10, "goal_met": all(r["overhead"] <= 0.10 for r in rows)}
    print(f"device: {name}; model {model.name} ({model.parameters} params), {args.steps} steps, guidance {scale}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
