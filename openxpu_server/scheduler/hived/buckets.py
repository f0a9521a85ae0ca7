"""Buckets of cells keyed by a small count (free leaf cells), with O(1) "smallest count >= k" lookup.

The packing rule (take the node with the fewest free leaf cells that still fits the task) is asked for
every task placed, so it must not scan the nodes. Each count has a set of cell indices; an integer
bit mask says which counts are non-empty, so the best bucket is found with two integer operations.
Sets of small ints iterate and pop in an order fixed by their history, which keeps the scheduler
deterministic from run to run.
"""

from __future__ import annotations


class Buckets:
    """Cell indices filed by count (1..size); count 0 and unhealthy cells are simply not filed."""

    __slots__ = ("sets", "mask", "size")

    def __init__(self, size: int):
        self.size = size
        self.sets: list[set[int]] = [set() for _ in range(size + 1)]
        self.mask = 0

    def add(self, key: int, idx: int) -> None:
        self.sets[key].add(idx)
        self.mask |= 1 << key

    def discard(self, key: int, idx: int) -> None:
        s = self.sets[key]
        s.discard(idx)
        if not s:
            self.mask &= ~(1 << key)

    def pop_fit(self, k: int) -> tuple[int, int]:
        """Remove and return (index, count) of a cell with the smallest count >= k, or (-1, -1)."""
        m = self.mask >> k
        if not m:
            return -1, -1
        f = k + (m & -m).bit_length() - 1
        s = self.sets[f]
        idx = s.pop()
        if not s:
            self.mask &= ~(1 << f)
        return idx, f

    def largest(self) -> int:
        """The largest filed count (0 when empty)."""
        return max(self.mask.bit_length() - 1, 0)

    def count_at_least(self, k: int) -> int:
        """How many filed cells have a count >= k."""
        return sum(len(self.sets[f]) for f in range(max(k, 0), self.size + 1))

    def __len__(self) -> int:
        return sum(len(s) for s in self.sets)
