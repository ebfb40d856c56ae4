"""Two DDP ranks on CPU (gloo): each rank draws its own masks for its own clips."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ajepa.masks import MaskCollator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_batch_masks(rank: int, world: int, port: int, cfg_json: str, out: dict) -> None:
    from ajepa.config import build_config
    from ajepa.data.loader import build_pretrain_loader
    from ajepa.train import Trainer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        import json

        trainer = Trainer(build_config(json.loads(cfg_json)))
        trainer.setup()
        cfg = trainer.cfg
        loader = build_pretrain_loader(trainer.dataset, trainer.collator, cfg.optim.batch_size // world, cfg.seed,
                                       trainer.total_steps, rank=rank, world_size=world)
        batch = next(iter(loader))
        out[rank] = (batch["index"].tolist(), batch["context_idx"].tolist())
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_draw_different_masks_for_their_own_clips(tiny_config):
    import json

    from ajepa.config import dump_config

    cfg = tiny_config("optim.batch_size=8", "masking.strategy=random", "threads=1")
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.start_processes(_first_batch_masks, args=(2, _free_port(), json.dumps(dump_config(cfg)), out),
                       nprocs=2, join=True, start_method="spawn")
    (clips0, masks0), (clips1, masks1) = out[0], out[1]
    assert set(clips0).isdisjoint(clips1), "each rank takes its own slice of the global batch"
    assert masks0 != masks1, "ranks must not share one mask draw"


def test_rank_zero_keeps_the_single_process_masks():
    from ajepa.config import RandomMask

    items = [(5, {"spec": torch.zeros(1, 16, 16)}) for _ in range(4)]
    single = MaskCollator(RandomMask(), (8, 8), seed=3, total_steps=10)(items)
    rank0 = MaskCollator(RandomMask(), (8, 8), seed=3, total_steps=10, rank=0)(items)
    rank1 = MaskCollator(RandomMask(), (8, 8), seed=3, total_steps=10, rank=1)(items)
    assert torch.equal(single["context_idx"], rank0["context_idx"])
    assert not torch.equal(single["context_idx"], rank1["context_idx"])
    again = MaskCollator(RandomMask(), (8, 8), seed=3, total_steps=10, rank=1)(items)
    assert torch.equal(rank1["context_idx"], again["context_idx"]), "a rank's masks are a pure function of (seed, step, rank)"
