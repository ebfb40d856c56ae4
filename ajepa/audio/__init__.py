"""Audio decoding and the log-mel frontend (knows files and tensors, not datasets)."""

from ajepa.audio.features import Frontend, NormStatsError, frames_for_samples, resolve_norm_stats
from ajepa.audio.io import AUDIO_EXTENSIONS, AudioError, check_audio_file, load_audio, prepare_wave

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioError",
    "Frontend",
    "NormStatsError",
    "check_audio_file",
    "frames_for_samples",
    "load_audio",
    "prepare_wave",
    "resolve_norm_stats",
]
