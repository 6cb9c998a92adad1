"""Benchmark: images per second of the backend's generation loop vs the bare diffusers loop.

Both run the same UNet, scheduler, batch and steps on the same device in the same process,
interleaved (so load from other processes hits both alike); the reference is the minimal
diffusers loop (``set_timesteps``; ``unet(x, t, class_labels=y).sample``;
``scheduler.step``) under ``torch.inference_mode``. Ours is
``provisioning.backend.sampling.generate`` (seeded noise, guidance branch, clamping,
copy to the CPU, CUDA-synchronised timing). Goal: overhead <= 10%.

Usage::

    python bench/bench_backend.py [--model digits-large] [--batch 16] [--steps 20] [--repeats 7] [--device cpu|cuda]
    python bench/bench_backend.py --model scenes-large [--batch 1 16] ...   (scene models: bench/bench_scenes.py)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a.startswith("scenes") for a in argv):  # prompt-conditioned scene models have their own loop
        import bench_scenes

        return bench_scenes.main(argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits-large")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: shared machine)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from provisioning.backend.models import load_model
    from provisioning.backend.sampling import generate, synchronise

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    device = model.device
    name = f"cuda ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else f"cpu ({args.threads} thread(s))"
    labels = np.arange(args.batch) % 10

    def bare() -> float:
        unet, scheduler = model.unet, model.scheduler
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn((args.batch, 1, model.image_size, model.image_size), generator=gen).to(device)
        y = torch.as_tensor(labels, device=device)
        synchronise(device)
        start = time.perf_counter()
        with torch.inference_mode():
            scheduler.set_timesteps(args.steps)
            for t in scheduler.timesteps:
                eps = unet(x, t, class_labels=y).sample
                x = scheduler.step(eps, t, x).prev_sample
        synchronise(device)
        return time.perf_counter() - start

    def ours() -> float:
        _, seconds = generate(model, labels, args.steps, seed=0, guidance_scale=1.0)
        return seconds

    def ours_wall() -> float:
        start = time.perf_counter()
        generate(model, labels, args.steps, seed=0, guidance_scale=1.0)
        synchronise(device)
        return time.perf_counter() - start

    for fn in (bare, ours, ours_wall):  # warm-up
        fn()
    times = {"bare": [], "ours": [], "ours_wall": []}
    order = [("bare", bare), ("ours", ours), ("ours_wall", ours_wall)]
    for repeat in range(args.repeats):
        shift = repeat % len(order)  # rotate who goes first, so drifting load biases no variant
        for key, fn in order[shift:] + order[:shift]:
            times[key].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": name,
        "model": model.name,
        "parameters": model.parameters,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "bare_images_per_s": args.batch / med["bare"],
        "ours_images_per_s": args.batch / med["ours_wall"],
        "overhead_wall": med["ours_wall"] / med["bare"] - 1.0,
        "overhead_timed_section": med["ours"] / med["bare"] - 1.0,
        "goal_overhead": 0.10,
    }
    result["goal_met"] = result["overhead_wall"] <= 0.10
    print(f"device: {name}; model {model.name} ({model.parameters} params), batch {args.batch}, {args.steps} steps")
    print(f"bare diffusers loop : {result['bare_images_per_s']:.1f} images/s")
    print(f"our generate()      : {result['ours_images_per_s']:.1f} images/s "
          f"(overhead {result['overhead_wall']:+.1%} end-to-end incl. noise; "
          f"{result['overhead_timed_section']:+.1%} in the timed section; goal <= +10%)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
