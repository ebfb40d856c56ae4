"""Issue-2 acceptance, short version: `experiments/tiny.yaml` pretraining must give an
encoder whose linear probe beats random encoders of the same shape on the synthetic task.

It runs the tiny experiment end to end at half its length (`optim.steps=1200`, the
schedule compressed; the full 2400 steps with 4,800 clips take ~5 min here, half the
suite), built-in evaluator included, and compares, on the same probe and 720 test clips:
- the pretrained EMA target encoder,
- its own initial weights (seeded exactly as the trainer seeds them: a paired
  comparison, so the margin measures what pretraining added, not a lucky draw), and
- a second random encoder of the same shape.

Margin: the full recipe (unstructured masking, session 8) led its initialisation by
0.26-0.44 over seeds 0-4, and at half length (seed 0) by 0.27 (0.613 against 0.339;
multi-block gave 0.582, session 6); random encoders of this shape score 0.28-0.36. The
test asks for MARGIN, a small fraction of that, so numerical differences between machines
cannot flip it while a pretraining that learns nothing still fails it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ajepa.config import SyntheticTask, load_config
from ajepa.eval import build_evaluator
from ajepa.eval.run import build_task_data, probe_encoder
from ajepa.models.vit import encoder_from_config
from ajepa.train import Trainer

TINY = Path(__file__).parents[1] / "experiments" / "tiny.yaml"
MARGIN = 0.05


@pytest.mark.slow
def test_pretrained_tiny_encoder_beats_random_encoders(tmp_path, synthetic_cache):
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"data.cache_dir={synthetic_cache}", "device=cpu",
                             "optim.steps=1200", "optim.warmup=80"])
    summary = Trainer(cfg, evaluator=build_evaluator(cfg)).fit()
    pretrained = summary["eval/synthetic/acc"]

    task_data = build_task_data(SyntheticTask(), cfg)
    random_scores = {}
    for seed in (cfg.seed, cfg.seed + 1):  # the run's own initialisation, then another draw
        torch.manual_seed(seed)
        encoder = encoder_from_config(cfg.model, cfg.grid).eval()
        random_scores[seed] = probe_encoder(encoder, task_data, cfg.eval)["eval/synthetic/acc"]

    losses = [json.loads(line)["train/loss"] for line in (cfg.out_dir / "metrics.jsonl").read_text().splitlines()
              if "train/loss" in line]
    print(f"probe accuracy: pretrained {pretrained:.3f}, random {random_scores}; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0]
    assert summary["train/target_rank"] > 8  # no collapse onto a few directions
    assert pretrained >= max(random_scores.values()) + MARGIN, (pretrained, random_scores)
