"""Scene generator training: checkpoint and resume give the same weights as one uninterrupted run."""
from __future__ import annotations

import json

import torch

from provisioning.backend.scenes.train import SceneTrainConfig, train_generator


def test_resume_is_bit_exact(tmp_path):
    cfg = dict(model="scenes-small", pool_size=48, batch_size=4, max_steps=4, checkpoint_every=2, warmup_steps=2)
    straight = train_generator(SceneTrainConfig(**cfg), tmp_path / "straight", log=lambda m: None)
    train_generator(SceneTrainConfig(**{**cfg, "max_steps": 2}), tmp_path / "resumed", log=lambda m: None)
    resumed = train_generator(SceneTrainConfig(**cfg), tmp_path / "resumed", log=lambda m: None)
    assert straight["step"] == resumed["step"] == 4
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for key, value in a["unet"].items():
        assert torch.equal(value, b["unet"][key]), key
    assert a["ema"]["optimization_step"] == b["ema"]["optimization_step"] == 4
    assert (tmp_path / "pool_seed0_n48.npz").is_file()  # the render pool is cached next to the runs
