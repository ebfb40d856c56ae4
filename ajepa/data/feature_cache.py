"""Log-mel feature cache: every clip's log-mel is computed once, then read back per item.

Why: without it a pretraining item decodes its clip and runs the Kaldi fbank on every
visit (a 5 s clip: ~2 ms decode + ~9 ms fbank on one core), and on real 5 s clips with
2 s crops the loop waited for data 45 % of its step time. With the cache an item is one
file read (~130 kB for 5 s), a crop and the normalisation.

**What is cached.** ``Frontend.log_mel(wave)`` of exactly the wave the uncached path builds
(decoded, mono, resampled, slice, gain): the un-normalised, un-padded log-mel
``[F, T_full]`` of the whole clip, stored as float16 ``.npy``. What comes after it -- the
pad/crop to ``target_frames`` (a random crop draws its start from the same generator, over
the same ``T_full``, so it stays a pure function of (seed, step, index)) and the
normalisation -- runs per item on the cached values. Cached items therefore equal uncached
ones up to float16 rounding: relative error <= 2^-11 of the log-mel value (<= 0.008 at
|log-mel| < 16), i.e. <= 0.008 / (2 std) after normalisation.

**Keys.** An entry lives at ``<cache_dir>/features/<settings>/<kk>/<key>.npy``:

- ``<settings>`` hashes every frontend setting that changes the features: sample rate,
  mel bins, frame length and shift, window, htk_compat, dither, plus a format version and
  the torchaudio version (resampling and the fbank come from it);
- ``<key>`` hashes the clip's content -- the bytes of its file, or an in-memory wave's
  samples and rate -- and the record's slice start, duration and gain.

Normalisation, ``target_frames`` and the crop mode come after the cache and are not part
of the key: changing them reuses the entries, and evaluation tasks under the pretraining
frontend share them. Rewriting a file (same path, even same size) gives it a new key.
``frontend.dither > 0`` adds fresh noise to every fbank call, which a cache would freeze
into one draw: then the cache is bypassed and every item is computed as before.

**Content digests** take one read of every file when a dataset is opened. To skip that
read on the next start, the digests are remembered with the ``stat`` they were taken under
(size, mtime, ctime, inode, device) in ``<cache_dir>/features/digests/``; a file is
re-read whenever any of those differ. ctime cannot be set from user space and changes on
every write, so an in-place rewrite is always seen, except within one timestamp tick of the
previous write: digests of files changed less than ``RACY_SECONDS`` before they were read
are never trusted (git's "racily clean" rule), so content wins.

**Concurrency and workers.** Every file is written under a temporary name and renamed into
place (atomic on POSIX): two processes building the same cache at once both succeed, and a
reader never sees a partial entry. A dataset holds a :class:`FeatureCache` (the folder and
16 bytes per record in a numpy array), so DataLoader workers fork or unpickle it cheaply
and open the entry files themselves. Entries are never deleted; remove
``<cache_dir>/features`` to reclaim space (about 25.6 kB per second of audio at 128 mels
and a 10 ms shift, close to the 32 kB/s of 16-bit 16 kHz WAV).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torchaudio
from torch.utils.data import DataLoader, Dataset

from ajepa.audio.features import Frontend, fbank_settings
from ajepa.audio.io import AudioError

if TYPE_CHECKING:  # datasets imports this module
    from ajepa.data.datasets import ClipDataset, ClipRecord

log = logging.getLogger("ajepa.data")

# Bump when what an entry holds changes: it is part of the settings key.
FEATURE_CACHE_VERSION = 1
# Digests of files modified this recently before they were read are re-read next time.
RACY_SECONDS = 2.0
DIGEST_BYTES = 16
_READ_CHUNK = 1 << 20
_NPY_MAGIC = b"\x93NUMPY"
_PROGRESS_SECONDS = 5.0


# --------------------------------------------------------------------------- keys


def cache_settings(frontend: Frontend) -> dict | None:
    """The settings an entry depends on, or None when features are random (dither > 0)."""
    if frontend.cfg.dither > 0:
        return None
    return {"version": FEATURE_CACHE_VERSION, "torchaudio": torchaudio.__version__.split("+")[0],
            **fbank_settings(frontend.cfg, frontend.sample_rate)}


def settings_folder(cache_dir: str | os.PathLike, frontend: Frontend) -> Path | None:
    """``<cache_dir>/features/<readable prefix>_<hash of the settings>``; None if uncacheable."""
    settings = cache_settings(frontend)
    if settings is None:
        return None
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    cfg = frontend.cfg
    name = f"{frontend.sample_rate}hz_{cfg.num_mel_bins}mel_{cfg.frame_shift_ms:g}ms_{digest}"
    return Path(cache_dir) / "features" / name


def file_digest(path: str) -> bytes:
    """blake2b-128 of a file's bytes."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.digest()


def wave_digest(row: np.ndarray, sample_rate: int) -> bytes:
    """blake2b-128 of an in-memory wave: its samples, dtype and sample rate."""
    row = np.ascontiguousarray(row)
    digest = hashlib.blake2b(f"{row.dtype.str}/{row.shape}/{int(sample_rate)}".encode(), digest_size=DIGEST_BYTES)
    digest.update(memoryview(row).cast("B"))
    return digest.digest()


def entry_key(content: bytes, start: float, duration: float | None, gain: float) -> bytes:
    """The entry of a record: its content digest plus slice and gain."""
    extra = struct.pack("<ddd", float(start), np.nan if duration is None else float(duration), float(gain))
    return hashlib.blake2b(content + extra, digest_size=DIGEST_BYTES).digest()


# --------------------------------------------------------------------------- the cache


class FeatureCache:
    """Where each record's cached log-mel lives: a folder plus one 16-byte key per record.

    ``present[i]`` is False for records without an entry (bad files when skipping): their
    items are computed from the audio as without a cache. Plain numpy arrays only, so it
    pickles small and forks cheaply into DataLoader workers.
    """

    def __init__(self, folder: str | os.PathLike, keys: np.ndarray, present: np.ndarray, num_mel_bins: int,
                 signatures: Sequence[tuple] | None = None):
        self.folder = str(folder)
        self.keys = np.ascontiguousarray(keys, dtype=np.uint8).reshape(-1, DIGEST_BYTES)
        self.present = np.asarray(present, dtype=bool)
        self.num_mel_bins = int(num_mel_bins)
        self._signatures = list(signatures) if signatures is not None else None
        self._lookup: dict[tuple, int] | None = None
        self._warned = False

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"FeatureCache({self.folder!r}, {int(self.present.sum())} of {len(self)} records cached)"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_signatures"] = state["_lookup"] = None  # only needed to select records, in the parent
        return state

    def entry_path(self, index: int) -> str:
        name = self.keys[index].tobytes().hex()
        return os.path.join(self.folder, name[:2], name + ".npy")

    def read(self, index: int) -> torch.Tensor | None:
        """The cached log-mel ``HalfTensor[F, T]`` of record `index`, or None (no entry)."""
        if not self.present[index]:
            return None
        path = self.entry_path(index)
        try:
            return torch.from_numpy(read_entry(path, self.num_mel_bins))
        except (OSError, ValueError) as err:
            if not self._warned:  # once per process: a vanished or damaged cache only costs speed
                self._warned = True
                warnings.warn(f"feature cache entry {path} unreadable ({err}); computing from the audio instead",
                              RuntimeWarning, stacklevel=3)
            return None

    def subset(self, indices: Sequence[int] | np.ndarray) -> "FeatureCache":
        indices = np.asarray(indices, dtype=np.int64)
        signatures = None if self._signatures is None else [self._signatures[int(i)] for i in indices]
        return FeatureCache(self.folder, self.keys[indices], self.present[indices], self.num_mel_bins, signatures)

    def select(self, records: Sequence["ClipRecord"]) -> "FeatureCache":
        """The cache for `records` (aligned with them); records it was not built for have no
        entry, so their items come from the audio."""
        if self._lookup is None:
            if self._signatures is None:
                raise ValueError("this FeatureCache has no record signatures (was it unpickled?)")
            self._lookup = {}
            for i, signature in enumerate(self._signatures):
                self._lookup.setdefault(signature, i)
        signatures = [record_signature(r) for r in records]
        positions = np.array([self._lookup.get(sig, -1) for sig in signatures], dtype=np.int64)
        known = positions >= 0
        keys = np.zeros((len(records), DIGEST_BYTES), dtype=np.uint8)
        keys[known] = self.keys[positions[known]]
        present = np.zeros(len(records), dtype=bool)
        present[known] = self.present[positions[known]]
        return FeatureCache(self.folder, keys, present, self.num_mel_bins, signatures)


def record_signature(record: "ClipRecord") -> tuple:
    """What makes two records the same audio (labels and splits do not).

    Numbers are rounded as :class:`~ajepa.data.datasets.RecordTable` stores them (gain as
    float32), so a record and its row in a table have one signature: a float64 gain such
    as 0.3 would otherwise never match and its clip would be decoded on every visit.
    """
    return (record.path, int(record.wave_index), float(np.float64(record.start)),
            None if record.duration is None else float(np.float64(record.duration)),
            float(np.float32(record.gain)))


def read_entry(path: str, num_mel_bins: int) -> np.ndarray:
    """Read a float16 ``[F, T]`` entry written by :func:`write_entry`, without np.load's
    header parsing (a quarter of the per-item cost)."""
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        buffer = bytearray(size)
        view, done = memoryview(buffer), 0
        while done < size:
            got = handle.readinto(view[done:])
            if not got:
                raise ValueError(f"truncated ({done} of {size} bytes)")
            done += got
    if buffer[:6] != _NPY_MAGIC:
        raise ValueError("not a .npy file")
    if buffer[6] == 1:
        start = 10 + int.from_bytes(buffer[8:10], "little")
    else:
        start = 12 + int.from_bytes(buffer[8:12], "little")
    header = bytes(buffer[10:start])
    if b"'<f2'" not in header or b"'fortran_order': False" not in header:
        raise ValueError(f"unexpected .npy header {header!r}")
    data = np.frombuffer(buffer, dtype=np.float16, offset=start)
    if data.size == 0 or data.size % num_mel_bins:
        raise ValueError(f"{data.size} values do not make [{num_mel_bins}, T]")
    return data.reshape(num_mel_bins, -1)


def write_entry(path: str, log_mel: torch.Tensor) -> None:
    """Atomically write ``[F, T]`` as float16 ``.npy`` (temporary name, then rename)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(log_mel.to(torch.float16).numpy()))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# --------------------------------------------------------------------------- file digests


def file_digests(paths: Sequence[str], memo_folder: Path | None, workers: int = 8
                 ) -> tuple[dict[str, bytes], dict[str, str]]:
    """Content digest of every path (read in full unless the memo vouches for it), and
    the reason for each path that could not be read."""
    paths = sorted(set(paths))
    if not paths:
        return {}, {}
    now_ns = time.time_ns()
    stats = _map(_stat, paths, workers)
    memo_path = None
    if memo_folder is not None:
        list_key = hashlib.sha1("\0".join(paths).encode("utf-8", "surrogateescape")).hexdigest()[:20]
        memo_path = memo_folder / f"{list_key}.npz"
    signature = np.array([s if s is not None else (-1,) * 5 for s in stats], dtype=np.int64).reshape(-1, 5)
    known = _load_memo(memo_path, len(paths))
    digests = np.zeros((len(paths), DIGEST_BYTES), dtype=np.uint8)
    reuse = np.zeros(len(paths), dtype=bool)
    if known is not None:
        reuse = known["trusted"] & (known["signature"] == signature).all(axis=1) & (signature[:, 0] >= 0)
        digests[reuse] = known["digest"][reuse]
    todo = [i for i in range(len(paths)) if not reuse[i] and stats[i] is not None]
    errors = {paths[i]: "file not found" if not os.path.exists(paths[i]) else "cannot stat"
              for i in range(len(paths)) if stats[i] is None}

    def digest_of(i: int) -> tuple[int, bytes | None, str | None]:
        try:
            return i, file_digest(paths[i]), None
        except OSError as err:
            return i, None, f"unreadable ({err})"

    trusted = reuse.copy()
    racy_ns = int(RACY_SECONDS * 1e9)
    for i, digest, error in _map(digest_of, todo, workers):
        if error is not None:
            errors[paths[i]] = error
            continue
        digests[i] = np.frombuffer(digest, dtype=np.uint8)
        trusted[i] = max(signature[i, 1], signature[i, 2]) < now_ns - racy_ns
    if memo_path is not None and (todo or known is None):
        _save_memo(memo_path, signature, digests, trusted)
    return {p: digests[i].tobytes() for i, p in enumerate(paths) if p not in errors}, errors


def _stat(path: str) -> tuple[int, int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino & 0x7FFF_FFFF_FFFF_FFFF, st.st_dev & 0x7FFF_FFFF_FFFF_FFFF


def _map(fn, items: Sequence, workers: int) -> list:
    if len(items) < 64 or workers <= 1:
        return list(map(fn, items))
    with ThreadPoolExecutor(workers) as pool:  # stats and reads wait on the disk; hashlib drops the GIL
        return list(pool.map(fn, items, chunksize=64))


def _load_memo(path: Path | None, count: int) -> dict[str, np.ndarray] | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as memo:
            known = {k: memo[k] for k in ("signature", "digest", "trusted")}
    except (OSError, ValueError, KeyError):
        return None
    if known["signature"].shape != (count, 5) or known["digest"].shape != (count, DIGEST_BYTES):
        return None
    return known


def _save_memo(path: Path, signature: np.ndarray, digests: np.ndarray, trusted: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, signature=signature, digest=digests, trusted=trusted)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- building


class _EntryWriter(Dataset):
    """Item j: compute record ``indices[j]``'s log-mel and write its entry (in a worker);
    returns only ``(j, error)`` so nothing large crosses the process boundary."""

    def __init__(self, dataset: "ClipDataset", cache: FeatureCache, indices: np.ndarray):
        self.dataset, self.cache, self.indices = dataset, cache, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> tuple[int, tuple[str, str] | None]:
        index = int(self.indices[j])
        try:
            log_mel = self.dataset.frontend.log_mel(self.dataset.wave(index))
        except AudioError as err:
            return j, (err.path, err.reason)
        write_entry(self.cache.entry_path(index), log_mel)
        return j, None


def build_feature_cache(dataset: "ClipDataset", cache_dir: str | os.PathLike, *, num_workers: int = 0,
                        progress: bool = True) -> FeatureCache | None:
    """Compute the entries `dataset` lacks and return its :class:`FeatureCache` (None when
    ``frontend.dither > 0``: nothing to cache).

    Bad files behave as at load time, only earlier: without ``skip_bad_files`` the first
    clip that fails to decode raises an :class:`AudioError` naming it; with it they are
    counted, left uncached, and replaced by the next clip at load time (with a warning),
    exactly as without a cache. The global RNG is not touched.
    """
    from ajepa.data.datasets import SKIP_HINT

    folder = settings_folder(cache_dir, dataset.frontend)
    if folder is None:
        log.info("%s: frontend.dither > 0 makes features random; not caching them", dataset.name)
        return None
    started = time.perf_counter()
    records = dataset.records
    count = len(records)
    paths = [records.path(i) for i in range(count)]
    contents, errors = file_digests([p for p in paths if p is not None], Path(cache_dir) / "features" / "digests")
    keys = np.zeros((count, DIGEST_BYTES), dtype=np.uint8)
    present = np.zeros(count, dtype=bool)
    wave_digests: dict[int, bytes] = {}
    for i in range(count):
        path = paths[i]
        if path is not None:
            content = contents.get(path)
            if content is None:
                continue
        else:
            row = int(records._wave_index[i])
            if row not in wave_digests:
                if dataset.waves is None:
                    raise ValueError(f"{dataset.name}: record {i} has no path and the dataset has no waves")
                wave_digests[row] = wave_digest(dataset.waves.array[row], dataset.waves.sample_rate)
            content = wave_digests[row]
        duration = records._duration[i]
        keys[i] = np.frombuffer(entry_key(content, float(records._start[i]),
                                          None if np.isnan(duration) else float(duration),
                                          float(records._gain[i])), dtype=np.uint8)
        present[i] = True
    signatures = [record_signature(r) for r in records]
    cache = FeatureCache(folder, keys, present, dataset.frontend.num_mel_bins, signatures)
    _write_settings(folder, dataset.frontend)

    # one computation per distinct entry that is not on disk yet
    first_of: dict[bytes, int] = {}
    for i in np.flatnonzero(present):
        first_of.setdefault(keys[i].tobytes(), int(i))
    missing = np.array([i for i in first_of.values() if not os.path.exists(cache.entry_path(i))], dtype=np.int64)
    bad: list[tuple[str, str]] = sorted(errors.items())
    bad_keys: set[bytes] = set()
    if len(missing):
        if progress:
            _say(f"{dataset.name}: computing log-mel features of {len(missing)} of {count} clips -> {folder}")
        loader = DataLoader(_EntryWriter(dataset, cache, missing), batch_size=None, num_workers=num_workers,
                            generator=torch.Generator())  # a private generator: the global RNG stays untouched
        last_report = time.perf_counter()
        for done, (j, error) in enumerate(loader, start=1):
            if error is not None:
                if not dataset.skip_bad_files:
                    raise AudioError(error[0], f"{error[1]}; {SKIP_HINT}")
                bad.append(error)
                bad_keys.add(keys[missing[j]].tobytes())
            now = time.perf_counter()
            if progress and now - last_report > _PROGRESS_SECONDS and done < len(missing):
                rate = done / (now - started)
                _say(f"{dataset.name}: {done}/{len(missing)} clips ({100 * done / len(missing):.0f} %), "
                     f"{rate:.0f} clips/s, ~{(len(missing) - done) / rate:.0f} s left")
                last_report = now
    if bad and not dataset.skip_bad_files:
        path, reason = bad[0]
        raise AudioError(path, f"{reason}; {SKIP_HINT}")
    if bad:
        for i in np.flatnonzero(cache.present):
            if keys[i].tobytes() in bad_keys:
                cache.present[i] = False
        log.warning("%s: %d clips could not be decoded for the feature cache; they stay uncached and are "
                    "replaced at load time (first: %s: %s)", dataset.name, len(bad), bad[0][0], bad[0][1])
    if progress and len(missing):
        _say(f"{dataset.name}: feature cache ready in {time.perf_counter() - started:.1f} s")
    return cache


def _write_settings(folder: Path, frontend: Frontend) -> None:
    """settings.json beside the entries, for people reading the cache folder."""
    path = folder / "settings.json"
    if path.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".settings.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(json.dumps(cache_settings(frontend), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _say(message: str) -> None:
    print(f"ajepa feature cache: {message}", file=sys.stderr, flush=True)
