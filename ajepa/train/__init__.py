"""Pretraining: the Trainer, its callbacks, schedules and checkpoints (no Ray, no MLflow)."""

from ajepa.train.callbacks import Callback, MetricsFile, RichProgress
from ajepa.train.checkpoint import load_encoder
from ajepa.train.loop import NonFiniteLossError, Trainer

__all__ = ["Callback", "MetricsFile", "NonFiniteLossError", "RichProgress", "Trainer", "load_encoder"]
