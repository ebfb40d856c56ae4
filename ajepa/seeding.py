"""Seeds derived from integers, the same in every process: one mixing function for all streams.

The data sampler (ajepa.data.loader) and the mask collator (ajepa.masks.collator) both
seed a fresh ``torch.Generator`` per (seed, epoch) or (seed, step) so that workers and
resumed runs draw the same numbers; they used to carry a copy each of this function.
It imports nothing, so it sits below both.
"""

from __future__ import annotations

_MASK64 = 0xFFFFFFFFFFFFFFFF


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 steps), stable across processes
    and platforms (Python's ``hash`` is salted per process, ``random`` state is not shared)."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (int(part) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 27)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF
