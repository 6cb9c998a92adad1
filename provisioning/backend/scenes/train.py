"""Train the scene models: ``python -m provisioning.backend.scenes.train {judge,generator,export,card}``.

What this module is for: the one script that makes the shipped scene weights. The generator
is trained with the DDPM epsilon objective (``DDPMScheduler.add_noise``; cosine betas) on
pixel-unshuffled renders, with Min-SNR-5 loss weighting (Hang et al., "Efficient Diffusion
Training via Min-SNR Weighting Strategy"), captions whose attributes are dropped at random
(each non-raw attribute kept with probability 0.5) and replaced by the empty caption with
probability 0.1 (classifier-free guidance), AdamW with warm-up then a constant rate, EMA of
the weights (``diffusers.training_utils.EMAModel``). It checkpoints (model, EMA, optimiser,
random states, CPU seconds) atomically every ``--checkpoint-every`` steps and on SIGINT /
SIGTERM, appends the loss curve to ``loss.jsonl``, and resumes from the checkpoint when
run again with the same ``--run-dir``. It stops at ``--max-steps`` or after
``--time-budget`` seconds, whichever is first. CUDA is used when present (bf16 autocast).

Examples::

    nice -n 5 python -m provisioning.backend.scenes.train judge --seed 0
    nice -n 5 python -m provisioning.backend.scenes.train generator --model scenes-large --max-steps 20000
    python -m provisioning.backend.scenes.train export --model scenes-large   # EMA weights -> shipped folder
    python -m provisioning.backend.scenes.train card --model scenes-large --samples 200

May import: torch, diffusers, numpy, matplotlib (loss curve), ``market`` (atomic IO), ``..models``
(device), the other modules of this package.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .generator import SCENE_MODEL_NAMES, SCENE_MODELS_DIR

RUNS_DIR = Path("runs/scenes")


@dataclass
class SceneTrainConfig:
    """How one scene generator is trained (saved in every checkpoint and card)."""

    model: str = "scenes-large"
    """Shipped size name."""
    seed: int = 0
    """Seed of the initialisation, the batches, the caption drops, the noise and the timesteps."""
    pool_size: int = 30_000
    """Rendered training images (drawn from the prior with ``seed``; captions re-drawn every use)."""
    batch_size: int = 64
    """Images per optimiser step."""
    learning_rate: float = 1e-3
    """AdamW rate after warm-up (constant, so a run can be extended by resuming)."""
    warmup_steps: int = 200
    """Linear warm-up steps."""
    keep_probability: float = 0.5
    """Probability that a caption states each non-raw attribute."""
    empty_caption_probability: float = 0.1
    """Probability that a caption is empty (the unconditional branch of guidance)."""
    min_snr_gamma: float = 5.0
    """Min-SNR loss weighting: weight = min(SNR, gamma) / SNR."""
    ema_decay: float = 0.999
    """Maximum EMA decay (diffusers' warm-up, power 2/3)."""
    max_steps: int = 20_000
    """Stop after this many optimiser steps in total (across resumes)."""
    time_budget_s: float = 1e9
    """Stop after this many wall-clock seconds of this invocation."""
    checkpoint_every: int = 100
    """Optimiser steps between checkpoints."""
    threads: int = 1
    """torch CPU threads."""
    device: str | None = None
    """``cuda`` / ``cpu`` (default: CUDA when present)."""


def _render_pool(size: int, seed: int, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``size`` renders from the prior: images ``(n, 32, 32, 3)`` uint8 and attribute indices ``(n, 8)``; cached."""
    from .render import render
    from .world import sample_description

    path = cache_dir / f"pool_seed{seed}_n{size}.npz"
    if path.is_file():
        data = np.load(path)
        return data["images"], data["attributes"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 17]))
    descriptions = [sample_description(rng) for _ in range(size)]
    images = np.stack([render(d, variant=i) for i, d in enumerate(descriptions)])
    attributes = np.stack([d.indices() for d in descriptions])
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, attributes=attributes)
    os.replace(tmp, path)
    return images, attributes


def training_captions(attributes: np.ndarray, rng: np.random.Generator, keep_probability: float,
                      empty_probability: float) -> list[str]:
    """One training caption per row of attribute indices, attributes dropped at random."""
    from .world import SceneDescription, caption, drop_attributes

    out = []
    for row in attributes:
        if rng.random() < empty_probability:
            out.append("")
        else:
            out.append(caption(drop_attributes(SceneDescription.from_indices(row), rng, keep_probability)))
    return out


class _StopFlag:
    """Set by SIGINT/SIGTERM so the loop checkpoints and exits cleanly."""

    def __init__(self) -> None:
        self.stop = False
        self._previous = {sig: signal.signal(sig, self._set) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _set(self, *_):
        self.stop = True

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_generator(cfg: SceneTrainConfig, run_dir: Path, log=print) -> dict:
    """Train (or resume) one scene generator in ``run_dir``; returns a summary."""
    import torch
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    from ..models import default_device
    from .generator import build_scene_unet, to_latent, unet_conditioning
    from .text import shared_encoder

    torch.set_num_threads(cfg.threads)
    device = cfg.device or default_device()
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    unet = build_scene_unet(cfg.model).to(device)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    step, cpu_s, wall_s = 0, 0.0, 0.0
    ckpt_path = run_dir / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        unet.load_state_dict(ckpt["unet"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        gen.set_state(ckpt["torch_rng"])
        step, cpu_s, wall_s = ckpt["step"], ckpt["cpu_s"], ckpt["wall_s"]
        log(f"[{cfg.model}] resumed at step {step} ({cpu_s:.0f} CPU s so far)")
    ema.to(device)
    images, attributes = _render_pool(cfg.pool_size, cfg.seed, run_dir.parent)
    pool = torch.as_tensor(images)
    encoder = shared_encoder(device)
    noise_schedule = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="epsilon")
    alphas = noise_schedule.alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    loss_weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else None
    flag = _StopFlag()
    losses: list[float] = []
    begin_wall, begin_cpu = time.perf_counter(), time.process_time()

    def save() -> None:
        _atomic_torch_save({
            "config": asdict(cfg), "unet": unet.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": gen.get_state(), "step": step,
            "cpu_s": cpu_s + time.process_time() - begin_cpu, "wall_s": wall_s + time.perf_counter() - begin_wall,
        }, ckpt_path)

    unet.train()
    curve = open(run_dir / "loss.jsonl", "a")
    try:
        while step < cfg.max_steps and not flag.stop and time.perf_counter() - begin_wall < cfg.time_budget_s:
            idx = rng.integers(0, len(images), cfg.batch_size)
            captions = training_captions(attributes[idx], rng, cfg.keep_probability, cfg.empty_caption_probability)
            states, mask = encoder.encode(captions)
            x0 = to_latent(pool[idx].permute(0, 3, 1, 2).float().div(127.5).sub(1.0)).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = torch.randint(0, 1000, (cfg.batch_size,), generator=gen).to(device)
            xt = noise_schedule.add_noise(x0, noise, t)
            for group in opt.param_groups:
                group["lr"] = cfg.learning_rate * min(1.0, (step + 1) / cfg.warmup_steps)
            condition = unet_conditioning(states.to(device), mask.to(device))
            if autocast is not None:
                with autocast:
                    pred = unet(xt, t, **condition).sample
            else:
                pred = unet(xt, t, **condition).sample
            per_image = ((pred.float() - noise) ** 2).mean(dim=(1, 2, 3))
            loss = (per_image * loss_weight[t]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            ema.step(unet.parameters())
            losses.append(float(per_image.detach().mean()))
            step += 1
            if step % 25 == 0:
                curve.write(json.dumps({
                    "step": step, "mse": round(float(np.mean(losses[-25:])), 5),
                    "cpu_s": round(cpu_s + time.process_time() - begin_cpu, 1),
                    "wall_s": round(wall_s + time.perf_counter() - begin_wall, 1),
                    "load": round(os.getloadavg()[0], 2), "text_cache_hits": encoder.hits,
                    "text_cache_misses": encoder.misses}) + "\n")
                curve.flush()
            if step % 100 == 0:
                log(f"[{cfg.model}] step {step} mse {np.mean(losses[-100:]):.4f} "
                    f"{time.perf_counter() - begin_wall:.0f}s this run")
            if step % cfg.checkpoint_every == 0:
                save()
    finally:
        curve.close()
        flag.restore()
    save()
    return {"model": cfg.model, "step": step, "run_dir": str(run_dir), "stopped_by_signal": flag.stop}


def export_generator(name: str, run_dir: Path, default_steps: int = 20, guidance_scale: float = 3.0,
                     out_dir: Path | None = None) -> dict:
    """Write the checkpoint's EMA weights in the shipped layout, with ``training.json`` and the loss curve."""
    import torch
    from diffusers.training_utils import EMAModel

    from market.atomic import atomic_write_json

    from .generator import build_scene_unet, save_scene_model

    ckpt = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    unet = build_scene_unet(name)
    unet.load_state_dict(ckpt["unet"])
    ema = EMAModel(unet.parameters())
    ema.load_state_dict(ckpt["ema"])
    ema.copy_to(unet.parameters())
    out_dir = Path(out_dir or SCENE_MODELS_DIR / name)
    save_scene_model(unet, name, out_dir, default_steps=default_steps, guidance_scale=guidance_scale)
    curve = [json.loads(line) for line in (run_dir / "loss.jsonl").read_text().splitlines() if line.strip()]
    _plot_curve(curve, out_dir / "loss_curve.png", name)
    cfg = ckpt["config"]
    record = {
        "name": name, "parameters": int(sum(p.numel() for p in unet.parameters())),
        "weights_bytes": (out_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size,
        "train_steps": ckpt["step"], "images_seen": ckpt["step"] * cfg["batch_size"],
        "train_cpu_s": round(ckpt["cpu_s"], 1), "train_wall_s": round(ckpt["wall_s"], 1),
        "final_mse_last100": round(float(np.mean([r["mse"] for r in curve[-4:]])), 5) if curve else None,
        "loss_curve": [{"step": r["step"], "mse": r["mse"], "cpu_s": r["cpu_s"]} for r in curve[::8]],
        "data": f"{cfg['pool_size']} procedural renders (provisioning.backend.scenes.render) drawn from the prior "
                f"with seed {cfg['seed']}; captions re-drawn per use with attributes kept with probability "
                f"{cfg['keep_probability']} and empty with probability {cfg['empty_caption_probability']}",
        "hardware": _hardware(cfg.get("device")),
        "config": cfg,
        "command": f"nice -n 5 python -m provisioning.backend.scenes.train generator --model {name} "
                   f"--max-steps {ckpt['step']} --seed {cfg['seed']} --batch-size {cfg['batch_size']} "
                   f"--pool-size {cfg['pool_size']} --learning-rate {cfg['learning_rate']} --run-dir {run_dir}",
        "export_command": f"python -m provisioning.backend.scenes.train export --model {name} --run-dir {run_dir} "
                          f"--default-steps {default_steps} --guidance-scale {guidance_scale}",
    }
    atomic_write_json(out_dir / "training.json", record)
    return record


def _plot_curve(curve: list[dict], path: Path, name: str) -> None:
    from market.atomic import headless_pyplot

    plt = headless_pyplot()

    if not curve:
        return
    steps = np.array([r["step"] for r in curve])
    mse = np.array([r["mse"] for r in curve])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, mse, lw=0.6, alpha=0.4, label="per 25 steps")
    k = min(20, len(mse))
    ax.plot(steps[k - 1:], np.convolve(mse, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("noise MSE (unweighted)")
    ax.set_title(f"{name}: training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _hardware(device: str | None) -> dict:
    import platform

    import torch

    return {"device": device or ("cuda" if torch.cuda.is_available() else "cpu"),
            "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "note": "project machine: 2 cores shared with five other jobs, niced"}


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m provisioning.backend.scenes.train",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    g = sub.add_parser("generator", help="train or resume one scene generator")
    g.add_argument("--model", choices=SCENE_MODEL_NAMES, required=True)
    g.add_argument("--run-dir", default=None, help="checkpoint folder (default runs/scenes/<model>)")
    for name, field_ in SceneTrainConfig.__dataclass_fields__.items():
        if name in ("model",):
            continue
        flag = "--" + name.replace("_", "-")
        kind = type(field_.default) if field_.default is not None else str
        g.add_argument(flag, type=kind, default=field_.default)
    e = sub.add_parser("export", help="checkpoint EMA weights -> shipped folder")
    e.add_argument("--model", choices=SCENE_MODEL_NAMES, required=True)
    e.add_argument("--run-dir", default=None)
    e.add_argument("--default-steps", type=int, default=20)
    e.add_argument("--guidance-scale", type=float, default=3.0)
    e.add_argument("--out", default=None, help="folder (default: the shipped folder of the model)")
    j = sub.add_parser("judge", help="train the scene judge on renders")
    j.add_argument("--seed", type=int, default=0)
    j.add_argument("--steps", type=int, default=2500)
    j.add_argument("--train-images", type=int, default=24_000)
    j.add_argument("--learning-rate", type=float, default=2e-3)
    j.add_argument("--init-from", default=None, help="judge.safetensors to fine-tune from")
    j.add_argument("--width", type=int, default=24, help="channels of the first conv stage")
    j.add_argument("--out", default=None, help="folder (default: the shipped scene-judge folder)")
    c = sub.add_parser("card", help="measure a shipped scene generator and write its card")
    c.add_argument("--model", choices=SCENE_MODEL_NAMES, required=True)
    c.add_argument("--samples", type=int, default=200)
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # on the shared machine extra threads spin and inflate CPU time
    if args.what == "generator":
        values = {k: getattr(args, k) for k in SceneTrainConfig.__dataclass_fields__ if k != "model"}
        cfg = SceneTrainConfig(model=args.model, **values)
        run_dir = Path(args.run_dir or RUNS_DIR / args.model)
        print(json.dumps(train_generator(cfg, run_dir, log=lambda m: print(m, flush=True)), indent=2))
    elif args.what == "export":
        run_dir = Path(args.run_dir or RUNS_DIR / args.model)
        record = export_generator(args.model, run_dir, args.default_steps, args.guidance_scale,
                                  Path(args.out) if args.out else None)
        print(json.dumps({k: v for k, v in record.items() if k != "loss_curve"}, indent=2))
    elif args.what == "judge":
        from .judge import JudgeTrainConfig, train_judge

        cfg = JudgeTrainConfig(seed=args.seed, steps=args.steps, train_images=args.train_images,
                               learning_rate=args.learning_rate, init_from=args.init_from, width=args.width)
        print(json.dumps(train_judge(cfg, Path(args.out) if args.out else None), indent=2))
    elif args.what == "card":
        from .cards import write_generator_card

        print(json.dumps(write_generator_card(args.model, samples=args.samples, seed=args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
