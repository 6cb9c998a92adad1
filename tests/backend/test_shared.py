"""Shared denoising: bookkeeping of steps, t0 = 0 equals separate generation, BER hurts."""
from __future__ import annotations

import pytest

from market.errors import UserError
from provisioning.backend.shared import SharedDenoiseConfig, prompt_pairs, shared_denoise


def test_prompt_pairs_differ():
    a, b = prompt_pairs(30, seed=2)
    assert (a != b).all() and set(a.tolist()) == set(range(10))


def test_grid_rows_and_step_savings(small_model, evaluator):
    cfg = SharedDenoiseConfig(t0_grid=[0, 2], tk_grid=[2], ber_grid=[0.0, 0.5], samples=6)
    rows = shared_denoise(small_model, cfg, evaluator=evaluator)
    assert len(rows) == 4
    for r in rows:
        assert r.steps_shared == r.t0 + 2 * r.tk and r.steps_separate == 2 * (r.t0 + r.tk)
        assert r.steps_saved_share == pytest.approx(r.t0 / (2 * (r.t0 + r.tk)))
        if r.t0 == 0:  # nothing shared, nothing sent: exactly separate generation
            assert r.accuracy_device1 == r.separate_accuracy_device1
            assert r.accuracy_device2 == r.separate_accuracy_device2


def test_bad_grid_is_user_error(small_model):
    with pytest.raises(UserError, match="tk_grid"):
        shared_denoise(small_model, SharedDenoiseConfig(tk_grid=[0], samples=2))
