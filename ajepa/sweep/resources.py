"""Does the cluster have what one trial asks for? Checked before any trial is scheduled.

Ray Tune queues a trial whose resources no node can ever offer and waits forever
("pending"), which on a laptop looks like a hang. A sweep asking for GPUs that are not
there fails here instead, with the numbers and the fix. For the default local cluster the
check runs before Ray starts, from the same detection Ray itself uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ajepa.sweep.errors import SpecError
from ajepa.sweep.schema import ResourcesSpec

DDP_DRIVER_CPU = 0.01  # what the Tune trial driving a DDP TorchTrainer reserves (Ray needs > 0)


class ResourceError(SpecError):
    """The cluster cannot run even one trial of the sweep."""


@dataclass(frozen=True)
class ClusterResources:
    cpus: float
    gpus: float
    max_node_cpus: float
    max_node_gpus: float
    where: str


def local_resources(num_cpus: float | None = None, num_gpus: float | None = None) -> ClusterResources:
    """What ``ray.init()`` on this machine would offer (without starting Ray)."""
    cpus = float(num_cpus) if num_cpus is not None else float(_detect_cpus())
    gpus = float(num_gpus) if num_gpus is not None else float(_detect_gpus())
    return ClusterResources(cpus, gpus, cpus, gpus, "this machine (local Ray)")


def _detect_cpus() -> float:
    try:
        from ray._private.utils import get_num_cpus

        return get_num_cpus()
    except Exception:  # private API moved: fall back to what the OS lets us use
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _detect_gpus() -> int:
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        visible = manager.get_current_process_visible_accelerator_ids()
        count = manager.get_current_node_num_accelerators()
        return min(count, len(visible)) if visible is not None else count
    except Exception:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            return len([d for d in visible.split(",") if d.strip()])
        return len(list(Path("/dev").glob("nvidia[0-9]*")))


def connected_resources(address: str | None = None) -> ClusterResources:
    """What the running Ray cluster this process is connected to offers (alive nodes)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [n.get("Resources", {}).get("CPU", 0.0) for n in nodes]
    gpus = [n.get("Resources", {}).get("GPU", 0.0) for n in nodes]
    where = f"the Ray cluster at {address}" if address else "the running Ray cluster"
    return ClusterResources(sum(cpus), sum(gpus), max(cpus, default=0.0), max(gpus, default=0.0),
                            f"{where} ({len(nodes)} node{'s' if len(nodes) != 1 else ''})")


def check_resources(req: ResourcesSpec, cluster: ClusterResources, source: str) -> None:
    """Raise :class:`ResourceError` if one trial cannot be placed on ``cluster``."""
    per = "per worker" if req.workers > 1 else "per trial"
    if req.gpu > 0 and cluster.gpus == 0:
        raise ResourceError(
            f"{source}: resources.gpu={req.gpu:g} {per}, but {cluster.where} has no GPUs.\n"
            "  Fix: set resources.gpu: 0 to run on CPU, run on a GPU machine, or pass --address "
            "of a cluster whose nodes have GPUs."
        )
    if req.gpu > cluster.max_node_gpus:
        raise ResourceError(
            f"{source}: resources.gpu={req.gpu:g} {per}, but the largest node of {cluster.where} "
            f"has {cluster.max_node_gpus:g} GPU(s); a trial cannot span nodes (use resources.workers for DDP)."
        )
    if req.cpu > cluster.max_node_cpus:
        raise ResourceError(
            f"{source}: resources.cpu={req.cpu:g} {per}, but the largest node of {cluster.where} "
            f"has {cluster.max_node_cpus:g} CPU(s). Fix: lower resources.cpu"
            + (" or pass --num-cpus." if "local" in cluster.where else ".")
        )
    if req.workers > 1:
        need_cpu, need_gpu = req.cpu * req.workers + DDP_DRIVER_CPU, req.gpu * req.workers
        if need_cpu > cluster.cpus or need_gpu > cluster.gpus:
            raise ResourceError(
                f"{source}: resources.workers={req.workers} x (cpu {req.cpu:g}, gpu {req.gpu:g}) plus "
                f"{DDP_DRIVER_CPU} CPU for the trial's driver needs {need_cpu:g} CPUs and {need_gpu:g} GPUs at once; {cluster.where} has "
                f"{cluster.cpus:g} CPUs and {cluster.gpus:g} GPUs. Fix: fewer workers or smaller shares."
            )


def concurrent_trials(req: ResourcesSpec, cluster: ClusterResources, limit: int | None) -> int:
    """How many trials can run at once (for the dry run's wall-time estimate)."""
    by_cpu = cluster.cpus // (req.cpu * req.workers) if req.cpu else float("inf")
    by_gpu = cluster.gpus // (req.gpu * req.workers) if req.gpu else float("inf")
    n = int(max(1, min(by_cpu, by_gpu)))
    return min(n, limit) if limit else n
