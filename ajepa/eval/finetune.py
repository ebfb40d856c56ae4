"""Fine-tuning: encoder + linear head, layer-wise lr decay, SpecAugment, mixup and
A-JEPA's regularized masking (paper Fig. 4).

Regularized masking picks ``ratio`` of the patches of each training sample and, by
``mode`` (one config axis, so the paper's comparison is one sweep):

- 'attention': the patches stay in the sequence but are excluded as attention keys
  (``SpectrogramViT(key_keep=False)``): no token, themselves included, may attend to
  them, so their outputs are built only from the other patches; they are still pooled.
- 'drop': the patches are removed from the sequence (``keep_idx``) and not pooled.
- 'zero': the patches' spectrogram input is set to zero (the normalised mean level).
- 'none': no regularization.

It applies to training steps only; validation and test passes see every patch, with no
augmentation. The epoch whose weights are tested is chosen on a validation split (the
task's own, else carved from training), never on test.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ajepa.config import FinetuneConfig, RegularizedMasking
from ajepa.eval.embeddings import encoder_for_input
from ajepa.eval.metrics import classification_metrics, selection_score
from ajepa.eval.splits import carve_validation
from ajepa.models.vit import SpectrogramViT
from ajepa.train.loop import NO_WEIGHT_DECAY
from ajepa.train.schedules import lr_at

# The warmup-cosine schedule and the no-decay rule are pretraining's (one home each, in
# ajepa.train); fine-tuning differs only in the floor its cosine decays to.
FINETUNE_MIN_LR = 1e-6


class Classifier(nn.Module):
    """Encoder, mean over the tokens it returns, LayerNorm and a linear head (MAE recipe)."""

    def __init__(self, encoder: SpectrogramViT, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.fc_norm = nn.LayerNorm(encoder.dim, eps=1e-6)
        self.head = nn.Linear(encoder.dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=2e-5)
        nn.init.zeros_(self.head.bias)

    def forward(self, spec: torch.Tensor, keep_idx: torch.Tensor | None = None,
                key_keep: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.encoder(spec, keep_idx=keep_idx, key_keep=key_keep)
        return self.head(self.fc_norm(tokens.mean(1)))


# --------------------------------------------------------------------------- optimiser


def layer_id(name: str, depth: int) -> int:
    """0 for the patch embedding and positions, i+1 for block i, depth+1 for norm and head."""
    if name.startswith("encoder.patch_embed") or name.startswith("encoder.pos_embed"):
        return 0
    if name.startswith("encoder.blocks."):
        return int(name.split(".")[2]) + 1
    return depth + 1


def layer_decay_groups(model: Classifier, weight_decay: float, layer_decay: float) -> list[dict]:
    """AdamW groups with ``lr_scale = layer_decay ** (depth + 1 - layer)`` (BEiT/MAE).

    Biases, norms and positional tables get no weight decay.
    """
    depth = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = layer_id(name, depth)
        decay = param.ndim > 1 and not any(key in name for key in NO_WEIGHT_DECAY)
        group = groups.setdefault((layer, decay), {
            "params": [], "weight_decay": weight_decay if decay else 0.0,
            "lr_scale": layer_decay ** (depth + 1 - layer),
        })
        group["params"].append(param)
    return list(groups.values())


# --------------------------------------------------------------------------- augmentation


def spec_augment(spec: torch.Tensor, max_freq: int, max_time: int, generator: torch.Generator) -> torch.Tensor:
    """One frequency and one time mask per clip, widths uniform in [0, max], filled with 0."""
    batch, _, bins, frames = spec.shape
    out = spec.clone()
    for axis, max_width, size in ((2, max_freq, bins), (3, max_time, frames)):
        if max_width <= 0:
            continue
        width = torch.randint(0, min(max_width, size) + 1, (batch,), generator=generator)
        start = (torch.rand(batch, generator=generator) * (size - width + 1)).long()
        positions = torch.arange(size)
        hidden = (positions[None] >= start[:, None]) & (positions[None] < (start + width)[:, None])
        shape = (batch, 1, size, 1) if axis == 2 else (batch, 1, 1, size)
        out = out.masked_fill(hidden.view(shape).to(out.device), 0.0)
    return out


def mixup(spec: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator):
    """Mix each clip with a random partner; targets are soft (one-hot/multi-hot) ``[B, C]``."""
    lam = float(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator))).beta(alpha, alpha))
    partner = torch.randperm(spec.shape[0], generator=generator).to(spec.device)
    return lam * spec + (1 - lam) * spec[partner], lam * targets + (1 - lam) * targets[partner]


def regularization_inputs(
    spec: torch.Tensor, grid: tuple[int, int], patch_size: tuple[int, int], cfg: RegularizedMasking,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(spec, keep_idx, key_keep) for one training batch under ``cfg.mode``.

    ``round(ratio * N)`` patches per sample (at most N - 1) are chosen uniformly.
    """
    num_patches = grid[0] * grid[1]
    count = min(num_patches - 1, int(round(cfg.ratio * num_patches)))
    if cfg.mode == "none" or count <= 0:
        return spec, None, None
    batch = spec.shape[0]
    order = torch.rand(batch, num_patches, generator=generator).argsort(1)
    hidden = order[:, :count]
    if cfg.mode == "attention":
        key_keep = torch.ones(batch, num_patches, dtype=torch.bool)
        key_keep.scatter_(1, hidden, False)
        return spec, None, key_keep.to(spec.device)
    if cfg.mode == "drop":
        keep_idx = order[:, count:].sort(1).values
        return spec, keep_idx.to(spec.device), None
    if cfg.mode == "zero":
        grid_mask = torch.ones(batch, num_patches)
        grid_mask.scatter_(1, hidden, 0.0)
        grid_mask = grid_mask.view(batch, 1, *grid)
        pixel_mask = grid_mask.repeat_interleave(patch_size[0], 2).repeat_interleave(patch_size[1], 3)
        full = torch.ones(batch, 1, *spec.shape[-2:])
        full[:, :, : pixel_mask.shape[2], : pixel_mask.shape[3]] = pixel_mask
        return spec * full.to(spec.device, spec.dtype), None, None
    raise ValueError(f"unknown regularized masking mode {cfg.mode!r}: attention|drop|zero|none")


# --------------------------------------------------------------------------- loop


@dataclass
class FinetuneResult:
    """Test metrics of the epoch chosen on validation.

    ``test_labels`` / ``test_predictions``: the per-clip outcome behind ``metrics``, in the
    test dataset's order (arg-max class, or ``probability >= 0.5`` when multi-label).
    """

    metrics: dict[str, float]
    best_epoch: int
    val_score: float
    val_history: list[float]
    test_labels: np.ndarray | None = None
    test_predictions: np.ndarray | None = None


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """Labels of every item: ``dataset.labels`` when the dataset exposes it, else one pass."""
    labels = getattr(dataset, "labels", None)
    if labels is not None and len(labels) == len(dataset):
        return np.asarray(labels)
    items = [torch.as_tensor(dataset[i]["label"]) for i in range(len(dataset))]
    return torch.stack(items).numpy()


def _subset(dataset: Dataset, positions: np.ndarray) -> Dataset:
    """A dataset's own ``subset`` (keeps its type and attributes) or a torch Subset."""
    if hasattr(dataset, "subset"):
        return dataset.subset(positions.tolist())
    return Subset(dataset, positions.tolist())


def _training_view(dataset: Dataset) -> Dataset:
    """Random crops for training when the dataset offers them (``ClipDataset.as_training``)."""
    return dataset.as_training(True) if hasattr(dataset, "as_training") else dataset


def _soft_targets(labels: torch.Tensor, num_classes: int, multilabel: bool) -> torch.Tensor:
    return labels.float() if multilabel else F.one_hot(labels.long(), num_classes).float()


def _loss(logits: torch.Tensor, soft: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, soft)
    return torch.sum(-soft * F.log_softmax(logits, 1), 1).mean()


@torch.no_grad()
def predict(model: Classifier, dataset: Dataset, batch_size: int, device: torch.device, multilabel: bool):
    """(labels, scores) over ``dataset`` with every patch visible, no augmentation."""
    model.eval()
    labels, scores = [], []
    # private generator: evaluating between epochs must not move the global RNG (dropout draws from it)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0, generator=torch.Generator()):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(batch["spec"].to(device)).float()
        scores.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).cpu())
        labels.append(torch.as_tensor(batch["label"]))
    return torch.cat(labels).numpy(), torch.cat(scores).numpy()


def finetune_fold(
    encoder: SpectrogramViT, train: Dataset, val: Dataset | None, test: Dataset, num_classes: int,
    multilabel: bool, metric: str, cfg: FinetuneConfig, seed: int = 0, eval_batch_size: int = 64,
    device: torch.device | str | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``encoder`` (the caller's stays untouched) and test the best epoch.

    The global torch RNG (drop-path) is forked and seeded, so the Trainer calling this
    mid-run continues with exactly the random stream it would have had without it.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    if val is None or len(val) == 0:
        fit_pos, val_pos = carve_validation(dataset_labels(train), cfg.val_fraction, seed, getattr(train, "groups", None))
        train, val = _subset(train, fit_pos), _subset(train, val_pos)
    train = _training_view(train)
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        return _finetune(encoder, train, val, test, num_classes, multilabel, metric, cfg, seed,
                         eval_batch_size, device)


def _finetune(encoder, train, val, test, num_classes, multilabel, metric, cfg: FinetuneConfig, seed,
              eval_batch_size, device) -> FinetuneResult:
    sample = train[0]["spec"]
    base = encoder_for_input(encoder, (1, *sample.shape))
    model = Classifier(copy.deepcopy(base), num_classes).to(device)
    model.encoder.requires_grad_(True)
    groups = layer_decay_groups(model, cfg.weight_decay, cfg.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=generator, num_workers=0)
    steps_per_epoch = len(loader)
    total, warmup = cfg.epochs * steps_per_epoch, int(round(cfg.warmup_epochs * steps_per_epoch))
    grid, patch = model.encoder.grid, model.encoder.patch_embed.patch_size
    autocast = dict(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    best_score, best_epoch, best_state, history = -math.inf, 0, None, []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for batch in loader:
            lr = lr_at(step, total, warmup, cfg.lr, FINETUNE_MIN_LR)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            spec = batch["spec"].to(device)
            soft = _soft_targets(torch.as_tensor(batch["label"]), num_classes, multilabel).to(device)
            spec = spec_augment(spec, cfg.specaug_freq, cfg.specaug_time, generator)
            if cfg.mixup > 0:
                spec, soft = mixup(spec, soft, cfg.mixup, generator)
            spec, keep_idx, key_keep = regularization_inputs(spec, grid, patch, cfg.regularized_masking, generator)
            with torch.enable_grad(), torch.autocast(**autocast):
                loss = _loss(model(spec, keep_idx=keep_idx, key_keep=key_keep).float(), soft, multilabel)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"fine-tuning loss is {loss.item()} at epoch {epoch}: lower eval.finetune.lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        labels, scores = predict(model, val, eval_batch_size, device, multilabel)
        score = selection_score(metric, labels, scores, multilabel)
        history.append(score)
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if best_state is None:
        raise FloatingPointError(f"fine-tuning never produced a finite validation {metric}: {history}")
    model.load_state_dict(best_state)
    labels, scores = predict(model, test, eval_batch_size, device, multilabel)
    predictions = (scores >= 0.5).astype(np.int8) if multilabel else scores.argmax(1)
    return FinetuneResult(classification_metrics(labels, scores, multilabel), best_epoch, best_score, history,
                          test_labels=labels, test_predictions=predictions)


__all__ = [
    "Classifier", "FinetuneResult", "finetune_fold", "layer_decay_groups", "layer_id", "lr_at",
    "mixup", "predict", "regularization_inputs", "spec_augment", "dataset_labels",
]
