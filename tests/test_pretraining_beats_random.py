"""Issue-2 acceptance, short version: `experiments/tiny.yaml` pretraining must give an
encoder whose linear probe beats random encoders of the same shape on the synthetic task.

It runs the real tiny experiment end to end (about 3 minutes on 2 CPU cores), built-in
evaluator included, so it is marked `acceptance` and run by `make test-acceptance`, not by CI's
`make test`. Measured margins (docs/STATUS.md): pretrained 0.417-0.452 vs random 0.369 on
84 test clips; the run-to-run spread of the pretrained number is not yet explained, and the
margin is too small to gate CI on.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ajepa.config import EvalTask, load_config
from ajepa.eval import build_evaluator
from ajepa.eval.run import build_task_data, probe_encoder
from ajepa.models.vit import encoder_from_config
from ajepa.train import Trainer

TINY = Path(__file__).parents[1] / "experiments" / "tiny.yaml"


@pytest.mark.acceptance
def test_pretrained_tiny_encoder_beats_random_encoders(tmp_path, synthetic_cache):
    cfg = load_config(TINY, [f"out_dir={tmp_path / 'run'}", f"data.cache_dir={synthetic_cache}", "device=cpu"])
    summary = Trainer(cfg, evaluator=build_evaluator(cfg)).fit()
    pretrained = summary["eval/synthetic/acc"]

    task_data = build_task_data(EvalTask(task="synthetic"), cfg)
    random_scores = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        encoder = encoder_from_config(cfg.model, cfg.grid).eval()
        random_scores.append(probe_encoder(encoder, task_data, cfg.eval)["eval/synthetic/acc"])

    losses = [json.loads(line)["train/loss"] for line in (cfg.out_dir / "metrics.jsonl").read_text().splitlines()
              if "train/loss" in line]
    print(f"probe accuracy: pretrained {pretrained:.3f}, random {random_scores}; loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0]
    assert summary["train/target_rank"] > 8  # no collapse onto a few directions
    assert pretrained > max(random_scores), (pretrained, random_scores)
