"""The A-JEPA pretraining loop: one readable step, resumable, callback-driven.

Each step (as in I-JEPA's ``train.py``):
  batch + masks from the collator -> target forward (EMA encoder, full input)
  -> context forward (visible patches) -> predictor -> loss
  -> optimiser step under the lr/wd schedules -> EMA update of the target encoder.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ajepa.config import (
    ConfigError,
    TrainConfig,
    dump_config,
    save_config,
    total_steps,
    warmup_clip_note,
    warmup_steps,
)
from ajepa.contracts import DivergedError
from ajepa.data.loader import build_pretrain_loader
from ajepa.models.jepa import AJEPA, collapse_stats
from ajepa.train.callbacks import Callback, CallbackList, MetricsFile
from ajepa.train.checkpoint import (
    checkpoint_path,
    config_differences,
    eval_signature,
    load_resume_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    training_lock,
)
from ajepa.train.schedules import ema_momentum_at, lr_at, weight_decay_at

# evaluator(encoders: {"target": SpectrogramViT, "context": SpectrogramViT}, step) -> metrics
Evaluator = Callable[[dict[str, torch.nn.Module], int], dict[str, float]]

NO_WEIGHT_DECAY = ("pos_embed", "mask_token")


class NonFiniteLossError(DivergedError):
    """The loss became NaN or infinite; the message names the step and the last finite loss."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is visible: use device=auto or device=cpu")
    return torch.device(name)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and Ray narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads for training and return the number used.

    Explicit `threads` wins; else OMP_NUM_THREADS (Ray sets it to a trial's CPUs); else
    half the usable CPUs. Why not torch's default (every core): beside any other busy
    process, the threads of small matmuls wait on each other, and a tiny pretraining run
    on 2 cores measured 10.5 samples/s at the default against 106 with one thread.
    """
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else max(1, usable_cpus() // 2)
    torch.set_num_threads(threads)
    return threads


def parameter_groups(modules: Iterable[torch.nn.Module]) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms, positional tables and mask tokens."""
    decay, no_decay = [], []
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim <= 1 or any(key in name for key in NO_WEIGHT_DECAY):
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


class Trainer:
    """Pretrains A-JEPA as `cfg` says and reports through callbacks.

    ``Trainer(cfg, callbacks, evaluator).fit()`` returns a summary dict of final metrics.
    If ``cfg.out_dir`` holds a checkpoint, training resumes from it exactly.
    """

    def __init__(self, cfg: TrainConfig, callbacks: Iterable[Callback] = (), evaluator: Evaluator | None = None):
        self.cfg = cfg
        self.out_dir = Path(cfg.out_dir)
        self.rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.is_main = self.rank == 0
        # only rank 0 reports, so a DDP run logs and tracks once
        self.callbacks = CallbackList(
            [MetricsFile(self.out_dir / "metrics.jsonl"), *callbacks] if self.is_main else []
        )
        self.evaluator = evaluator
        self.step = 0
        self.last_metrics: dict[str, float] = {}
        self.eval_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        """Everything before the first step; bad input fails here, before any training."""
        from ajepa.data import build_pretrain_dataset
        from ajepa.masks import MaskCollator

        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.threads = configure_threads(cfg.threads)
        if self.device.type == "cuda" and self.world_size > 1:
            # one GPU per DDP worker: LOCAL_RANK as torchrun and Ray Train set it
            local_rank = int(os.environ.get("LOCAL_RANK", self.rank % torch.cuda.device_count()))
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.dataset = build_pretrain_dataset(cfg)
        if cfg.optim.batch_size % self.world_size:
            raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} is not divisible by {self.world_size} workers")
        steps_per_epoch = len(self.dataset) // cfg.optim.batch_size
        if steps_per_epoch == 0:
            raise ConfigError(
                f"the pretraining set has {len(self.dataset)} clips, fewer than optim.batch_size="
                f"{cfg.optim.batch_size}: lower the batch size or add data"
            )
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = total_steps(cfg.optim, steps_per_epoch)
        self.warmup_steps = warmup_steps(cfg.optim, steps_per_epoch)
        if self.is_main and (note := warmup_clip_note(cfg.optim, steps_per_epoch)):
            print(note, file=sys.stderr, flush=True)
        self.collator = MaskCollator(cfg.masking, cfg.grid, cfg.seed, self.total_steps, rank=self.rank)

        # seeded right here, after the data set-up (which may generate and cache clips on
        # first use): the initial weights depend on cfg.seed alone, cold cache or warm
        torch.manual_seed(cfg.seed)
        self.model = AJEPA(cfg).to(self.device)
        self.peak_lr = cfg.optim.lr * (cfg.optim.batch_size / 256 if cfg.optim.scale_lr else 1.0)
        trainable = [self.model.context_encoder, self.model.predictor]
        self.optimizer = torch.optim.AdamW(
            parameter_groups(trainable), lr=self.peak_lr, betas=tuple(cfg.optim.betas),
            weight_decay=cfg.optim.weight_decay, fused=self.device.type == "cuda",
        )
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.optim.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.optim.precision == "fp16")
        self.forward_model = self.model
        if self.world_size > 1:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.optim.compile:
            self.forward_model = torch.compile(self.forward_model, dynamic=True)
        self._maybe_resume()
        if self.is_main:  # only now: a refused resume must not overwrite the run's config
            save_config(cfg, self.out_dir / "config.yaml")

    @property
    def checkpoint_folder(self) -> Path | None:
        """``checkpoint_dir`` when set (possibly shared by runs of one pretraining signature)."""
        return Path(self.cfg.checkpoint_dir) if self.cfg.checkpoint_dir is not None else None

    def _maybe_resume(self) -> None:
        path = checkpoint_path(self.out_dir, folder=self.checkpoint_folder)
        if not path.exists():
            return
        state = load_resume_checkpoint(path, map_location=self.device)
        changed = config_differences(state["config"], self.cfg)
        if changed:
            raise ConfigError(
                f"{path.parent} holds a checkpoint of a different experiment; changed keys:\n  "
                + "\n  ".join(changed)
                + "\nUse another out_dir, or restore the original values to resume."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        # metrics of another evaluation set-up (a run sharing this pretraining) are not ours
        same_eval = state.get("eval_signature", eval_signature(self.cfg)) == eval_signature(self.cfg)
        self.eval_metrics = dict(state.get("eval_metrics", {})) if same_eval else {}
        set_rng_state(state["rng"])

    def save(self) -> Path:
        path = checkpoint_path(self.out_dir, folder=self.checkpoint_folder)
        if self.is_main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "total_steps": self.total_steps,
                "config": dump_config(self.cfg),
                "eval_metrics": self.eval_metrics,
                "eval_signature": eval_signature(self.cfg),
                "rng": rng_state(),
            }
            save_checkpoint(path, state, keep_previous=True)
            if self.cfg.keep_checkpoints > 1:
                save_checkpoint(checkpoint_path(self.out_dir, self.step, self.checkpoint_folder), state)
                self._prune_step_checkpoints()
        if self.world_size > 1:
            dist.barrier()
        return path

    def _prune_step_checkpoints(self) -> None:
        olds = sorted(checkpoint_path(self.out_dir, folder=self.checkpoint_folder).parent.glob("step*.pt"))
        for old in olds[: max(0, len(olds) - (self.cfg.keep_checkpoints - 1))]:
            old.unlink()

    # ------------------------------------------------------------------ one step
    def set_schedules(self) -> dict[str, float]:
        cfg, step, total = self.cfg, self.step, self.total_steps
        lr = lr_at(step, total, self.warmup_steps, self.peak_lr, cfg.optim.min_lr)
        wd = weight_decay_at(step, total, cfg.optim.weight_decay, cfg.optim.weight_decay_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if group["apply_wd"]:
                group["weight_decay"] = wd
        momentum = ema_momentum_at(step, total, cfg.ema.start, cfg.ema.end, cfg.ema.schedule)
        return {"lr": lr, "wd": wd, "ema": momentum}

    def train_step(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, float]]:
        schedule = self.set_schedules()
        spec = batch["spec"].to(self.device, non_blocking=True)
        context_idx = batch["context_idx"].to(self.device, non_blocking=True)
        target_idx = batch["target_idx"].to(self.device, non_blocking=True)
        target_block = (batch["target_block"].to(self.device, non_blocking=True)
                        if batch["num_blocks"] > 1 else None)

        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype else nullcontext())
        with autocast:
            terms, targets = self.forward_model(spec, context_idx, target_idx, target_block, batch["num_blocks"])
        self.scaler.scale(terms["loss"]).backward()
        if self.cfg.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.cfg.optim.grad_clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.model.ema_update(schedule["ema"])
        self.step += 1
        return {name: value.detach() for name, value in terms.items()}, targets, schedule

    # ------------------------------------------------------------------ the run
    def fit(self, pretrain: bool = True) -> dict[str, Any]:
        """Set up, pretrain, evaluate; returns the summary. ``pretrain=False`` evaluates the
        encoders exactly as set-up built them (a sweep's control: seeded, never stepped)."""
        # a shared checkpoint folder is trained into by one run at a time (DDP ranks share one run)
        shared = self.checkpoint_folder if pretrain and self.world_size == 1 else None
        try:
            with training_lock(shared):
                self.setup()
                if not pretrain and self.step:
                    raise RuntimeError(f"{self.out_dir} holds a checkpoint at step {self.step}, but this run "
                                       "must evaluate the initial weights: use an empty out_dir")
                self.callbacks.on_start(self)
                if pretrain:
                    self._train()
            if self.evaluator is not None and not self._evaluated_at(self.step):
                self.evaluate()
            summary = {**self.last_metrics, **self.eval_metrics, "train/steps": self.step,
                       "data/skipped_clips": self.dataset.skipped}
        except BaseException as err:
            self.callbacks.on_end("FAILED", {"error": f"{type(err).__name__}: {err}", "step": self.step})
            raise
        self.callbacks.on_end("FINISHED", summary)
        return summary

    def _evaluated_at(self, step: int) -> bool:
        return self.eval_metrics.get("eval/step") == step

    def _train(self) -> None:
        cfg = self.cfg
        loader = build_pretrain_loader(
            self.dataset, self.collator, cfg.optim.batch_size // self.world_size, cfg.seed,
            self.total_steps, start_step=self.step, num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda", rank=self.rank, world_size=self.world_size,
        )
        self.model.train()
        window = _LogWindow(self.step)
        last_finite = math.nan
        fetch_start = time.perf_counter()
        for batch in loader:
            window.data_wait += time.perf_counter() - fetch_start
            terms, targets, schedule = self.train_step(batch)
            window.add(terms, batch)
            at_log = self.step % cfg.log_every == 0 or self.step == self.total_steps
            at_ckpt = self.step % cfg.checkpoint_every == 0 or self.step == self.total_steps
            if at_log or at_ckpt:
                last_finite = window.check_finite(last_finite)
            if at_log:
                self.last_metrics = window.metrics(self.step, schedule, targets)
                self.callbacks.on_log(self.step, self.last_metrics)
                window = _LogWindow(self.step)
            if at_ckpt:
                self.callbacks.on_checkpoint(self.step, self.save())
            every = cfg.eval.every_steps
            if self.evaluator is not None and every and self.step % every == 0 and self.step < self.total_steps:
                self.evaluate()
                self.save()
            fetch_start = time.perf_counter()

    def evaluate(self) -> dict[str, float]:
        """Run the downstream evaluator on the current encoders and report the metrics."""
        was_training = self.model.training
        self.model.eval()
        metrics = dict(self.evaluator(
            {"target": self.model.target_encoder, "context": self.model.context_encoder}, self.step
        ))
        self.model.train(was_training)
        metrics["eval/step"] = self.step
        self.eval_metrics = metrics
        self.callbacks.on_eval(self.step, metrics)
        return metrics


class _LogWindow:
    """Accumulates per-step values between two log steps without forcing a GPU sync.

    Every loss term the objective returns is logged as ``train/<name>`` (``loss`` is the
    minimised total), so a new term needs no change here."""

    def __init__(self, start_step: int):
        self.start_step = start_step
        self.terms: dict[str, list[torch.Tensor]] = {}
        self.mask_ratio = self.hard_share = 0.0
        self.samples = 0
        self.data_wait = 0.0
        self.started = time.perf_counter()

    @property
    def losses(self) -> list[torch.Tensor]:
        return self.terms.get("loss", [])

    def add(self, terms: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        for name, value in terms.items():
            self.terms.setdefault(name, []).append(value)
        self.mask_ratio += float(batch["mask_ratio"])
        self.hard_share += float(batch["hard_share"])
        self.samples += batch["spec"].shape[0]

    def check_finite(self, last_finite: float) -> float:
        values = torch.stack(self.losses).float().cpu().tolist() if self.losses else []
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss is {value} at step {self.start_step + offset + 1}; last finite loss "
                    f"{last_finite:.6g}. Lower optim.lr, set optim.grad_clip, or use precision=bf16/fp32."
                )
            last_finite = value
        return last_finite

    def metrics(self, step: int, schedule: dict[str, float], targets: torch.Tensor) -> dict[str, float]:
        n = max(1, len(self.losses))
        elapsed = max(1e-9, time.perf_counter() - self.started)
        return {
            **{f"train/{name}": float(torch.stack(values).float().mean()) for name, values in self.terms.items()},
            "train/lr": schedule["lr"],
            "train/wd": schedule["wd"],
            "train/ema": schedule["ema"],
            "train/mask_ratio": self.mask_ratio / n,
            "train/hard_share": self.hard_share / n,
            **{f"train/{k}": v for k, v in collapse_stats(targets).items()},
            "train/samples_per_s": self.samples / elapsed,
            "train/data_wait": min(1.0, self.data_wait / elapsed),
        }
