"""Step-aware, resumable batching for pretraining.

The batch sampler yields ``[(step, index), ...]``: every item carries the global step it
belongs to. The dataset wrapper passes the step through, so the mask collator (and the
random crop) are pure functions of ``(seed, step, index)``. That survives DataLoader
worker processes (no shared counters) and resume from a checkpoint (start the sampler at
the saved step), and gives the curriculum its training progress.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ajepa.seeding import mix_seed


class StepBatchSampler(Sampler):
    """Batches for global steps ``start_step .. total_steps-1``; one permutation per epoch.

    Under DDP each rank takes its own slice ``[rank::world_size]`` of every global batch,
    so the global batch is the same whatever the number of workers.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        total_steps: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_items < batch_size:
            raise ValueError(
                f"the dataset has {num_items} clips, fewer than one batch of {batch_size}: "
                "lower optim.batch_size or add data"
            )
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.total_steps, self.start_step = total_steps, start_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_items // batch_size

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5A3))
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self):
        epoch, perm = None, None
        for step in range(self.start_step, self.total_steps):
            step_epoch, position = divmod(step, self.steps_per_epoch)
            if step_epoch != epoch:
                epoch, perm = step_epoch, self._permutation(step_epoch)
            batch = perm[position * self.batch_size:(position + 1) * self.batch_size]
            yield [(step, int(i)) for i in batch[self.rank::self.world_size]]

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)


class StepTaggedDataset(Dataset):
    """Wraps a clip dataset: item ``(step, index)`` -> ``(step, dataset[(step, index)])``.

    The wrapped dataset receives the step too, so its random crop is a pure function of
    ``(seed, step, index)`` (see ``ajepa.data.datasets.crop_generator``) and the step
    travels on to the mask collator.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        step, _ = item
        return step, self.dataset[item]


def build_pretrain_loader(
    dataset: Dataset,
    collate_fn,
    batch_size: int,
    seed: int,
    total_steps: int,
    start_step: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), batch_size, seed, total_steps, start_step, rank, world_size)
    return DataLoader(
        StepTaggedDataset(dataset),
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        generator=torch.Generator(),  # worker base seeds must not draw from (and shift) the global RNG
        prefetch_factor=4 if num_workers else None,
    )
