"""Shared fixtures of the backend tests: one torch thread, shipped models loaded once."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_model():
    """The shipped ``digits-small`` on the CPU (skips with the training command if absent)."""
    from market.errors import MissingArtifactError
    from provisioning.backend.models import load_model

    try:
        return load_model("digits-small", device="cpu")
    except MissingArtifactError as exc:  # weights are committed; this only guards a partial checkout
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def evaluator():
    from provisioning.backend.evaluator import load_evaluator

    return load_evaluator()
