"""The scene-backend generator behind the problem: shapes, determinism, cache identity (2 UNet steps)."""
import numpy as np
import pytest

from market.errors import MissingArtifactError
from provisioning.denoising.generation import GenerationKey, SceneBackendGenerator


@pytest.fixture(scope="module")
def model():
    from provisioning.backend.scenes import load_scene_model

    try:
        return load_scene_model("scenes-small", device="cpu")
    except MissingArtifactError as exc:
        pytest.skip(str(exc))


def test_shared_generation_is_deterministic_and_keyed_by_weights(model):
    gen = SceneBackendGenerator(model)
    key = GenerationKey("A grassland in daylight, with one large white house in the centre",
                        "A grassland in daylight, with one large red car in the centre", 1, 1, 0.03, 3)
    a, b = gen.generate(key), gen.generate(key)
    assert a.shape == (3, 32, 32) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, gen.generate(GenerationKey(key.server_prompt, key.device_prompt, 1, 1, 0.5, 3)))
    assert SceneBackendGenerator(model, guidance_scale=1.0).identity != gen.identity


def test_batched_generation_matches_one_by_one(model):
    gen = SceneBackendGenerator(model, batch_size=3)
    house = "A grassland in daylight, with one large white house in the centre"
    car = "A grassland in daylight, with one large red car in the centre"
    keys = [GenerationKey.of(car, house, 1, 1, 0.03, 3), GenerationKey.of(house, car, 1, 1, 0.0, 3),
            GenerationKey.of(car, car, 1, 1, 0.5, 4), GenerationKey.of(car, house, 0, 2, 0.5, 3),
            GenerationKey.of(house, house, 1, 1, 0.03, 3)]
    batched = gen.generate_many(keys)
    for key, image in zip(keys, batched):
        # batched convolutions round differently; an 8-bit link level flipped by that is the worst case
        assert np.abs(image - gen.generate(key)).mean() < 1e-3
    assert keys[3].server_prompt == "" and keys[3].ber == 0.0  # no server steps: no server, no link
