"""Downstream evaluation: linear probe and fine-tuning (see ajepa.eval.run)."""

from ajepa.eval.run import build_evaluator, evaluate_task, finetune_encoder, probe_encoder

__all__ = ["build_evaluator", "evaluate_task", "finetune_encoder", "probe_encoder"]
