"""Shared fixtures: the shipped scene judge and a tiny problem on the rendering test double."""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def judge():
    from provisioning.backend.scenes import load_judge

    return load_judge()


@pytest.fixture()
def tiny(judge, tmp_path):
    from provisioning.denoising.evaluators import GA1, GA2, Personality
    from provisioning.denoising.generation import GenerationCache, RenderingGenerator
    from provisioning.denoising.problem import DenoiseConfig, QoETable, User

    config = DenoiseConfig(devices=2, t0_grid=(0, 2, 6), tk_grid=(2, 6, 9), power_levels_dbw=(6.0, 24.0))
    users = [User("ga1", "A grassland in daylight, with one large white house in the centre", GA1),
             User("ga2", "A grassland in daylight, with one large red car in the centre", GA2),
             User("mid", "An ocean at dusk, with two small yellow balls on the left", Personality(.5, .5, .5, .5, .5))]
    cache = GenerationCache(RenderingGenerator(), tmp_path / "cache")
    return config, users, QoETable(config, cache, judge), cache
