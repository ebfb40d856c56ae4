"""benchmarks/band_decoding.py: the cross-validated R^2 it reports, on constructed data."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
band_decoding = importlib.import_module("band_decoding")


def test_r2_is_near_one_for_a_linear_target_and_near_zero_for_an_unrelated_one():
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((300, 12))
    linear = embedding @ rng.standard_normal((12, 3)) + 0.01 * rng.standard_normal((300, 3))
    unrelated = rng.standard_normal((300, 2))
    r2 = band_decoding.band_r2(embedding, np.concatenate([linear, unrelated], axis=1))
    assert np.all(r2[:3] > 0.99) and np.all(np.abs(r2[3:]) < 0.1)
    assert band_decoding.quarter_means(np.arange(8.0)) == [0.5, 2.5, 4.5, 6.5]
