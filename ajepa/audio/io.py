"""Decode audio files into mono float waveforms at the model's sample rate.

Decoding goes through `soundfile` (libsndfile: WAV, FLAC, OGG, MP3, ...) because
`torchaudio.load` needs FFmpeg, which the project's machines do not have. Every failure is
an :class:`AudioError` whose message starts with the file path, so a bad clip in a
two-million-file dataset can be found and removed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional

from ajepa.contracts import UserError

# Extensions libsndfile decodes; folder scans look for these.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")

# Frames decoded by the cheap up-front check: enough to hit a corrupt data chunk early,
# small enough that checking a million files costs little more than opening them.
_PROBE_FRAMES = 1024


@contextlib.contextmanager
def single_threaded():
    """Run per-clip tensor work on one intra-op thread.

    One clip's decode checks, resampling and fbank are too small to gain from intra-op
    threads, and on an oversubscribed CPU (DataLoader workers, parallel sweep trials) the
    threads' synchronisation makes them 10-20x slower (a 10 s fbank: 10 ms on one thread,
    70-270 ms on two busy cores). Parallelism across clips comes from DataLoader workers.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class AudioError(UserError):
    """A file that cannot serve as audio; the message is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    start_seconds: float = 0.0,
    duration_seconds: float | None = None,
) -> torch.Tensor:
    """Decode `path` to ``FloatTensor[num_samples]``: mono (channel mean) at `sample_rate`.

    `start_seconds` / `duration_seconds` read a slice without decoding the rest of the
    file (used for the background-noise slices of Speech Commands).
    """
    path = Path(path)
    try:
        with soundfile.SoundFile(str(path)) as handle:
            file_rate = handle.samplerate
            if start_seconds:
                handle.seek(min(int(round(start_seconds * file_rate)), handle.frames))
            frames = -1 if duration_seconds is None else int(round(duration_seconds * file_rate))
            data = handle.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise _open_error(path, err) from None
    return prepare_wave(data, file_rate, sample_rate, source=path)


def prepare_wave(
    data: np.ndarray | torch.Tensor, source_rate: int, sample_rate: int, source: str | os.PathLike = "<array>"
) -> torch.Tensor:
    """``[samples]`` or ``[samples, channels]`` -> mono float32 tensor at `sample_rate`, checked.

    Shared by files and in-memory waves so both fail the same way on empty or
    non-finite audio.
    """
    array = np.asarray(data, dtype=np.float32)
    if not array.flags.writeable:  # memory-mapped cache: torch needs its own copy
        array = array.copy()
    wave = torch.from_numpy(array)
    if wave.ndim not in (1, 2):
        raise AudioError(source, f"expected [samples] or [samples, channels] audio, got shape {tuple(wave.shape)}")
    with single_threaded():
        if wave.ndim == 2:
            wave = wave.mean(dim=1)
        check_wave(wave, source)
        if source_rate != sample_rate:
            wave = torchaudio.functional.resample(wave, source_rate, sample_rate)
        return wave.contiguous()


def check_wave(wave: torch.Tensor, source: str | os.PathLike) -> None:
    """Raise :class:`AudioError` for empty or non-finite (NaN/inf) samples."""
    if wave.numel() == 0:
        raise AudioError(source, "empty audio (0 samples)")
    if not bool(torch.isfinite(wave).all()):
        bad = int((~torch.isfinite(wave)).sum())
        raise AudioError(source, f"non-finite audio ({bad} NaN/inf samples)")


def check_audio_file(path: str | os.PathLike) -> None:
    """Cheap up-front check: the file exists, has a readable header, is non-empty and its
    first block decodes to finite samples. Raises :class:`AudioError`.

    Costs about one file open plus a 1024-frame read, so it can run over millions of files
    before training starts; a defect deeper in the file is reported when the clip is loaded.
    """
    path = Path(path)
    try:
        with soundfile.SoundFile(str(path)) as handle:
            if handle.frames == 0:
                raise AudioError(path, "empty audio (0 frames)")
            block = handle.read(min(_PROBE_FRAMES, handle.frames), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as err:
        raise _open_error(path, err) from None
    if block.shape[0] == 0:
        raise AudioError(path, "empty audio (header says frames but none decode)")
    if not np.isfinite(block).all():
        raise AudioError(path, "non-finite audio (NaN/inf samples)")


def _open_error(path: Path, err: Exception) -> AudioError:
    """libsndfile reports a missing file as a generic open error; say which it is."""
    if not path.exists():
        return AudioError(path, "file not found")
    return AudioError(path, f"unreadable audio ({err})")
