"""Loading shipped models and local pipeline folders; a few denoising steps; determinism."""
from __future__ import annotations

import numpy as np
import pytest

from market.errors import MissingArtifactError, UserError
from provisioning.backend.models import MODEL_NAMES, load_model
from provisioning.backend.sampling import denoise, generate, initial_noise


def test_shipped_models_exist_with_cards():
    from provisioning.backend.models import MODELS_DIR
    import json

    sizes = []
    for name in MODEL_NAMES:
        folder = MODELS_DIR / name
        assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
        card = json.loads((folder / "card.json").read_text())
        for key in ("parameters", "train_time_s", "hardware", "data", "training_command", "measured"):
            assert key in card, (name, key)
        sizes.append(card["parameters"])
    assert sizes == sorted(sizes) and len(set(sizes)) == 3  # small < medium < large


def test_few_denoising_steps_shape_range_and_determinism(small_model):
    labels = np.array([0, 3, 7])
    a, seconds = generate(small_model, labels, steps=3, seed=11)
    b, _ = generate(small_model, labels, steps=3, seed=11)
    c, _ = generate(small_model, labels, steps=3, seed=12)
    assert a.shape == (3, 1, 16, 16) and seconds > 0
    assert np.all(a >= -1) and np.all(a <= 1)
    assert np.array_equal(a, b)  # same seed, same output on the CPU
    assert not np.allclose(a, c)


def test_schedule_slices_compose_to_the_full_run(small_model):
    x = initial_noise(small_model, 2, seed=4)
    full = denoise(small_model, x.clone(), [1, 2], total_steps=4)
    half = denoise(small_model, x.clone(), [1, 2], total_steps=4, start=0, stop=2)
    rest = denoise(small_model, half, [1, 2], total_steps=4, start=2)
    assert np.allclose(full.numpy(), rest.numpy(), atol=1e-6)


def test_missing_and_bad_folders_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such model folder"):
        load_model(tmp_path / "nope")
    with pytest.raises(UserError, match="not a model folder"):
        load_model(tmp_path)
    (tmp_path / "backend.json").write_text('{"name": "x"}')
    with pytest.raises(MissingArtifactError, match="weights missing"):
        load_model(tmp_path)


def test_local_diffusers_pipeline_folder_is_loaded_and_measured(tmp_path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    from provisioning.backend.measurement import MeasureConfig, measure

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=50)).save_pretrained(tmp_path / "pipe")
    model = load_model(tmp_path / "pipe", device="cpu")
    assert model.pipeline is not None and model.num_classes is None
    images, seconds = generate(model, [0, 0], steps=3, seed=0)
    again, _ = generate(model, [0, 0], steps=3, seed=0)
    assert images.shape == (2, 3, 8, 8) and np.array_equal(images, again) and seconds > 0
    result = measure(model, MeasureConfig(steps=3, samples=2, trials=2, ber=0.1, warmup=False))
    assert result.accuracy is None  # no evaluator for an arbitrary pipeline
    assert result.tokens == model.tokens and result.bits == 2 * 8 * 8 * 3 * 8
    assert 0.05 < result.observed_ber < 0.15 and result.latency_s > 0
