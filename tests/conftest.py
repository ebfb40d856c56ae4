"""Shared fixtures: a tiny, fast pretraining config on the built-in synthetic data."""

from __future__ import annotations

import pytest

from ajepa.config import load_config

TINY_OVERRIDES = [
    "model.preset=tiny", "model.encoder_dim=48", "model.encoder_heads=2", "model.encoder_depth=2",
    "model.predictor_dim=32", "model.predictor_heads=2", "model.predictor_depth=1",
    "data.kind=synthetic", "data.clip_seconds=1.0", "data.synthetic.num_clips=60",
    "frontend.target_frames=96", "frontend.norm=none",
    "optim.batch_size=8", "optim.steps=6", "optim.warmup=2", "optim.precision=fp32", "optim.lr=1e-3",
    "log_every=1", "checkpoint_every=3", "device=cpu",
]


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory):
    """One synthetic-data cache for the whole session, so clips are generated once."""
    return tmp_path_factory.mktemp("synthetic-cache")


@pytest.fixture
def tiny_config(tmp_path, synthetic_cache):
    def make(*extra: str):
        return load_config(None, [*TINY_OVERRIDES, f"data.cache_dir={synthetic_cache}",
                                  f"out_dir={tmp_path / 'run'}", *extra])
    return make
