"""The built-in synthetic set (ajepa.data.synthetic) as a dataset: generated on first use.

An evaluation task sees the very set pretraining generates (same parameters from
``data.synthetic``, same clip length), through its held-out val/test splits; its
normalisation stats are computed on first use too, since nobody runs ``ajepa-stats`` on
data that does not exist yet.
"""

from __future__ import annotations

from pathlib import Path

from ajepa.config import DataConfig, SyntheticTask
from ajepa.data.datasets import SPLIT_NAMES, ClipRecord, WaveArray
from ajepa.data.sources.base import DatasetSource, Source, TaskSpec, register
from ajepa.data.synthetic import load_synthetic, synthetic_folder


def synthetic_source(data: DataConfig, sample_rate: int, clip_seconds: float) -> Source:
    generated = load_synthetic(data.synthetic, sample_rate, clip_seconds, data.cache_dir)
    waves = WaveArray(generated.sample_rate, None if generated.waves_path else generated.waves, generated.waves_path)
    records = [
        ClipRecord(None, (int(label),), SPLIT_NAMES[code], wave_index=i)
        for i, (label, code) in enumerate(zip(generated.labels, generated.split_codes))
    ]
    location = synthetic_folder(data.synthetic, sample_rate, clip_seconds, data.cache_dir)
    return Source("synthetic", records, list(generated.class_names), False, location, waves=waves,
                  clip_seconds=clip_seconds, stats_on_first_use=True)


@register(SyntheticTask)
class Synthetic(DatasetSource):
    spec = TaskSpec(clip_seconds=None, target_frames=None, metric="acc")

    def task_source(self, task: SyntheticTask, data, sample_rate, clip_seconds, skip) -> Source:
        return synthetic_source(data, sample_rate, clip_seconds or data.clip_seconds)

    def pretrain_source(self, data: DataConfig) -> Source:
        return synthetic_source(data, data.sample_rate, data.clip_seconds).train_only()

    def stats_location(self, data: DataConfig) -> Path:
        return synthetic_folder(data.synthetic, data.sample_rate, data.clip_seconds, data.cache_dir)
