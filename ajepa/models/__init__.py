"""Spectrogram ViT encoder, predictor, objectives and the A-JEPA model."""

from ajepa.models.jepa import AJEPA, collapse_stats
from ajepa.models.predictor import Predictor
from ajepa.models.vit import SpectrogramViT, encoder_from_config

__all__ = ["AJEPA", "Predictor", "SpectrogramViT", "collapse_stats", "encoder_from_config"]
