"""Full-state checkpoints: enough to resume a run bit-for-bit on CPU.

Saved atomically (write to a temporary file, read it back, then rename), and the previous
``last.pt`` is kept as ``last.prev.pt`` until the next save: a checkpoint that is torn,
emptied or overwritten after the fact (disk full, a copy gone wrong) costs one
checkpoint interval, not the run. Loaded with ``weights_only=True``: a checkpoint is data,
never code; a file that is not a readable checkpoint raises :class:`CheckpointError`,
one line that names it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ajepa.config import TrainConfig, build_config, dump_config, flatten
from ajepa.contracts import UserError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
PREVIOUS = "last.prev.pt"


class CheckpointError(UserError):
    """A checkpoint file exists but cannot be read as one (torn, empty, not a checkpoint)."""

# Keys that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("name", "out_dir", "checkpoint_dir", "device", "threads", "log_every", "checkpoint_every",
                     "keep_checkpoints", "data.num_workers", "data.cache_dir", "data.feature_cache", "eval.")



def checkpoint_path(out_dir: Path, step: int | None = None, folder: Path | None = None) -> Path:
    """``last.pt`` (or ``step<N>.pt``) in ``folder``, by default ``out_dir/checkpoints``."""
    name = LAST if step is None else f"step{step:08d}.pt"
    return (Path(folder) if folder is not None else Path(out_dir) / CHECKPOINT_DIR) / name


def pretraining_signature(cfg: TrainConfig, code_version: str = "") -> str:
    """What determines a pretraining: every config key but evaluation, output paths,
    logging cadence and machine settings (:data:`RESUMABLE_CHANGES`), plus the code's
    version, hashed. Runs with one signature learn the same weights, so they may share one
    pretraining; a new code version gets a new one rather than an old checkpoint."""
    flat = flatten(dump_config(cfg))
    kept = {k: v for k, v in flat.items()
            if not any(k == p or k.startswith(p) for p in RESUMABLE_CHANGES)}
    payload = json.dumps({"config": kept, "code": code_version}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def eval_signature(cfg: TrainConfig) -> str:
    """Hash of the evaluation settings: eval metrics stored in a checkpoint count for a run
    only when they were measured with its own settings."""
    return hashlib.sha1(json.dumps(dump_config(cfg)["eval"], sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def training_lock(folder: Path | None):
    """Exclusive lock on a shared checkpoint folder while one process trains into it (the
    others wait, then resume its finished checkpoint). No-op for a run's own folder."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".training.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _stderr(f"waiting for the pretraining in {folder} (another run with this signature is training)")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any], keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically, verified by reading it back first.

    ``keep_previous``: the file being replaced survives as ``last.prev.pt`` beside it
    (the fallback of :func:`load_resume_checkpoint`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        load_checkpoint(tmp)  # a save that cannot be read back never replaces a good file
        if keep_previous and path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's state (weights only, never pickled code); ``mmap``: tensors stay on
    disk until touched (cheap when only the step or config is needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors ...
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not an ajepa checkpoint (no model weights in it)")
    return state


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_resume_checkpoint(path: Path, map_location: str | torch.device = "cpu",
                           warn=None) -> dict[str, Any]:
    """``last.pt``, or when it cannot be read, the previous one kept beside it (with a
    warning through ``warn``, naming both). Raises CheckpointError when neither reads."""
    try:
        return load_checkpoint(path, map_location)
    except CheckpointError as err:
        previous = Path(path).with_name(PREVIOUS)
        if not previous.is_file():
            raise CheckpointError(f"{err}; no previous checkpoint to fall back to: move the file away "
                                  "to start the run afresh") from None
        state = load_checkpoint(previous, map_location)
        (warn or _stderr)(f"warning: {err}; resuming from the previous checkpoint {previous.name} "
                        f"(step {state.get('step')})")
        return state


# Keys added with a new default whose old behaviour differs: a saved config without the
# key ran with the value given here, not with today's default.
OLD_BEHAVIOUR = {("model", "predictor_attention"): "shared_context"}


def with_old_behaviour(saved: dict) -> dict:
    """A saved config with the keys it predates set to what that run really did."""
    saved = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
    for (section, key), value in OLD_BEHAVIOUR.items():
        if isinstance(saved.get(section), dict) and key not in saved[section]:
            saved[section][key] = value
    return saved


def config_differences(saved: dict, current: TrainConfig) -> list[str]:
    """Keys whose values differ between a checkpoint's config and the current one.

    The saved config is re-validated first, so a key added to the config types after the
    checkpoint was written counts as its default (an old run resumes unless the new key
    is set to something else); a saved config that no longer validates is compared as is.
    """
    saved = with_old_behaviour(saved)
    try:
        saved = dump_config(build_config(saved, source="checkpoint"))
    except ValueError:
        pass
    old, new = flatten(saved), flatten(dump_config(current))
    keys = sorted(set(old) | set(new))
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
        if old.get(k) != new.get(k) and not any(k == p or k.startswith(p) for p in RESUMABLE_CHANGES)
    ]


def load_encoder(path: str | Path, which: str = "target"):
    """Encoder (target = EMA, or context) and config from a pretraining checkpoint."""
    from ajepa.models.vit import encoder_from_config

    if which not in ("target", "context"):
        raise ValueError(f"which must be 'target' or 'context', got {which!r}")
    state = load_checkpoint(Path(path))
    cfg = build_config(state["config"], source=f"{path} (saved config)")
    encoder = encoder_from_config(cfg.model, cfg.grid)
    prefix = f"{which}_encoder."
    weights = {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}
    encoder.load_state_dict(weights)
    return encoder.eval(), cfg
