"""Writers of tiny datasets in the exact on-disk layouts of the general-audio suite (a few
short clips per class, a distinct tone per class so a linear probe can learn something).

Used by the loader tests (tests/test_data_suite_loaders.py) and the suite evaluation
(tests/test_data_suite_eval.py); :func:`write_suite` lays every task of ``general_audio``
under one data root, each in its conventional folder (``ajepa.config.SUITES``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import soundfile

from ajepa.data.sources.gtzan import GTZAN_GENRES
from ajepa.data.sources.speechcommands import VERSION_WORDS

RATE = 16000


def tone(path: Path, label: int, seconds: float = 0.3, seed: int = 0) -> Path:
    """A tone of class `label` plus a little noise, as 16-bit wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * 200 * (label + 1) * t)
    wave += 0.03 * np.random.default_rng([seed, label]).standard_normal(t.size)
    soundfile.write(path, wave.astype(np.float32), RATE)
    return path


def write_urbansound8k(root: Path, classes: int = 2, per_fold: int = 1) -> Path:
    """``audio/fold1..10/<fsID>-<classID>-0-<n>.wav`` + ``metadata/UrbanSound8K.csv``."""
    rows = [["slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"]]
    for fold in range(1, 11):
        for class_id in range(classes):
            for n in range(per_fold):
                fs_id = 1000 * fold + 10 * class_id + n
                name = f"{fs_id}-{class_id}-0-{n}.wav"
                tone(root / "audio" / f"fold{fold}" / name, class_id, seed=fs_id)
                rows.append([name, fs_id, 0.0, 0.3, 1, fold, class_id, f"class{class_id}"])
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    with (root / "metadata" / "UrbanSound8K.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


def write_gtzan(root: Path, per_genre: int = 4, lists: bool = True) -> Path:
    """``genres/<genre>/<genre>.000NN.wav``; clip 0/1/2 of each genre in the train/valid/test
    lists, any further clip in none (a "faulty" excerpt the filtered split drops)."""
    listed: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for label, genre in enumerate(GTZAN_GENRES):
        for n in range(per_genre):
            tone(root / "genres" / genre / f"{genre}.{n:05d}.wav", label, seed=n)
            if n < 3:
                listed[("train", "valid", "test")[n]].append(f"{genre}/{genre}.{n:05d}.wav")
    if lists:
        for split, lines in listed.items():
            (root / f"{split}_filtered.txt").write_text("\n".join(lines) + "\n")
    return root


def write_nsynth(root: Path, families: tuple[int, ...] = (0, 3, 10), per_split: int = 2) -> Path:
    """``nsynth-{train,valid,test}/examples.json`` + ``nsynth-<split>/audio/<note>.wav``."""
    for release in ("train", "valid", "test"):
        notes = {}
        for family in families:
            for n in range(per_split):
                note = f"fam{family}_{release}_{n:03d}-060-100"
                tone(root / f"nsynth-{release}" / "audio" / f"{note}.wav", family, seed=n)
                notes[note] = {"instrument_family": family, "instrument_family_str": f"family{family}", "pitch": 60}
        (root / f"nsynth-{release}" / "examples.json").write_text(json.dumps(notes))
    return root


def write_voxceleb1(root: Path, speakers: int = 3, per_split: int = 1) -> Path:
    """``wav/<id>/<video>/<utt>.wav`` + ``iden_split.txt`` (one video per split and speaker)."""
    lines = []
    for s in range(speakers):
        speaker = f"id1{s:04d}"
        for number, video in ((1, "trainVideo1"), (2, "validVideo2"), (3, "testVideo33")):
            for u in range(per_split):
                relative = f"{speaker}/{video}/{u + 1:05d}.wav"
                tone(root / "wav" / relative, s, seed=number * 10 + u)
                lines.append(f"{number} {relative}")
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return root


def write_cremad(root: Path, actors: int = 10, emotions: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"),
                 sentences: tuple[str, ...] = ("DFA",)) -> Path:
    """``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``, actors 1001, 1002, ..."""
    for a in range(actors):
        for sentence in sentences:
            for e, emotion in enumerate(emotions):
                tone(root / "AudioWAV" / f"{1001 + a}_{sentence}_{emotion}_XX.wav", e, seed=a)
    return root


def write_speech_commands(root: Path, version: int = 2, words: tuple[str, ...] | None = None) -> Path:
    """``<word>/<speaker>_nohash_0.wav`` (three speakers: train, val, test) + the two lists."""
    val, test = [], []
    for i, word in enumerate(words or VERSION_WORDS[version]):
        for speaker, listing in (("0a1b2c3d", None), ("1f2e3d4c", val), ("9a8b7c6d", test)):
            tone(root / word / f"{speaker}_nohash_0.wav", i % 8, seconds=0.2, seed=i)
            if listing is not None:
                listing.append(f"{word}/{speaker}_nohash_0.wav")
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return root


def write_evar(metadata: Path, audio: Path, folds: bool = False, labels: tuple[str, ...] = ("ANG", "HAP")) -> Path:
    """EVAR's ``evar/metadata/<task>.csv`` (an index column, file_name,label,split|fold) + clips."""
    rows = [["", "file_name", "label", "fold" if folds else "split"]]
    for k in range(3):
        for i, label in enumerate(labels):
            name = f"clips/{label}_{k}.wav"
            tone(audio / name, i, seed=k)
            rows.append([len(rows) - 1, name, label, k + 1 if folds else ("train", "valid", "test")[k]])
    metadata.parent.mkdir(parents=True, exist_ok=True)
    with metadata.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return metadata


def write_suite(data_root: Path) -> Path:
    """Every dataset of the ``general_audio`` suite under its conventional folder."""
    from test_eval_run import write_esc50  # the ESC-50 release layout, as the CLI tests write it

    write_esc50(data_root / "ESC-50-master", classes=2, per_fold=1, seconds=0.3)
    write_urbansound8k(data_root / "UrbanSound8K")
    write_speech_commands(data_root / "speech_commands_v0.02")
    write_voxceleb1(data_root / "VoxCeleb1", speakers=2)
    write_cremad(data_root / "CREMA-D", actors=10, emotions=("ANG", "HAP"))
    write_gtzan(data_root / "GTZAN", per_genre=3)
    write_nsynth(data_root / "nsynth", families=(0, 3), per_split=2)
    return data_root
