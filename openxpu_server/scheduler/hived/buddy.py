"""One chain's buddy allocator (HiveD §1.4): free lists per level, split on take, merge on give-back.

The free lists hold the *unbound* physical cells: cells no VC has bound one of its virtual cells to.
Only the highest free cells are listed (buddies are merged), so "a free level-k cell" is one dict
lookup. Opportunistic usage is orthogonal to binding (an opportunistic task on a free cell leaves it
free, merely "dirty"), so each level also keeps the subset of clean cells (healthy, no opportunistic
task): a VC binds a clean cell when it can and only preempts when none is left.

VC safety is the invariant `feasible(healthy free cells, unbound demand)`: walking from the top
level down, the free cells of each level (plus the split remainder of the level above) must cover
the unbound virtual cells all VCs still hold at that level. Taking a free cell of exactly the
requested level never breaks it (the paper's buddy theorem); splitting a higher cell may, so every
split is checked first ("safe relaxed buddy allocation"). When bad hardware makes the invariant
false, the scheduler binds bad cells to VCs ("doomed") until it is true again (§1.9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layout_model import SkuType

if TYPE_CHECKING:
    from .buckets import Buckets
    from .cells import Cell, Node


class Chain:
    """One cell-type tree (identified by its top type): levels, sizes, free lists and demand."""

    def __init__(self, name: str, types: list[str], child_num: list[int], node_level: int, sku: SkuType):
        self.name = name
        self.types = types  # index = level (1 = leaf)
        self.top = len(types) - 1
        self.child_num = child_num  # children of one level-l cell (index = level)
        self.node_level = node_level
        self.leaf_type = types[1]
        self.sku = sku
        self.size = [0] * (self.top + 1)  # leaves per level-l cell
        self.size[1] = 1
        for lv in range(2, self.top + 1):
            self.size[lv] = self.size[lv - 1] * child_num[lv]
        self.node_size = self.size[node_level]
        self.cells_at: list[list[Cell]] = [[] for _ in range(self.top + 1)]
        self.tops: list[Cell] = []
        self.nodes: list[Node] = []
        self.free: list[dict[int, Cell]] = [{} for _ in range(self.top + 1)]
        self.clean: list[dict[int, Cell]] = [{} for _ in range(self.top + 1)]
        self.fh = [0] * (self.top + 1)  # healthy free cells per level
        self.demand = [0] * (self.top + 1)  # unbound, undoomed virtual cells of all VCs per level
        self.doomed: dict[int, Cell] = {}
        self.bad_nodes = 0
        self.idle = 0  # leaves of healthy nodes an opportunistic task could take now
        self.opp_buckets: tuple[Buckets, Buckets]  # set by Topology: nodes by idle leaves, (unbound, bound)

    def unit_size(self, level: int) -> int:
        """Leaves of the placement unit a level-l cell offers (a task never spans two nodes)."""
        return min(self.size[level], self.node_size)

    # ------------------------------------------------------------------ safety
    def short_level(self, fh: list[int] | None = None, demand: list[int] | None = None) -> int:
        """The highest level where healthy free cells cannot cover the unbound demand (0: safe)."""
        fh = self.fh if fh is None else fh
        demand = self.demand if demand is None else demand
        carry = 0
        for lv in range(self.top, 0, -1):
            left = fh[lv] + carry - demand[lv]
            if left < 0:
                return lv
            carry = left * self.child_num[lv] if lv > 1 else 0
        return 0

    def split_safe(self, from_level: int, to_level: int) -> bool:
        """Whether splitting a healthy free cell of `from_level` to bind a `to_level` cell keeps VC safety."""
        fh = self.fh[:]
        fh[from_level] -= 1
        for lv in range(to_level, from_level):
            fh[lv] += self.child_num[lv + 1] - 1
        demand = self.demand[:]
        demand[to_level] -= 1
        return self.short_level(fh, demand) == 0

    # ------------------------------------------------------------------ free lists
    def fl_add(self, cell: Cell) -> None:
        cell.in_free = True
        lv = cell.level
        self.free[lv][cell.idx] = cell
        h = cell.nbad == 0
        cell.fl_h = h
        if h:
            self.fh[lv] += 1
        c = h and cell.opp == 0
        cell.fl_c = c
        if c:
            self.clean[lv][cell.idx] = cell

    def fl_remove(self, cell: Cell) -> None:
        cell.in_free = False
        lv = cell.level
        del self.free[lv][cell.idx]
        if cell.fl_h:
            self.fh[lv] -= 1
            cell.fl_h = False
        if cell.fl_c:
            del self.clean[lv][cell.idx]
            cell.fl_c = False

    def fl_refresh(self, cell: Cell) -> None:
        """Re-file a free cell whose health or opportunistic usage changed."""
        h = cell.nbad == 0
        if h != cell.fl_h:
            self.fh[cell.level] += 1 if h else -1
            cell.fl_h = h
        c = h and cell.opp == 0
        if c != cell.fl_c:
            if c:
                self.clean[cell.level][cell.idx] = cell
            else:
                del self.clean[cell.level][cell.idx]
            cell.fl_c = c

    def give_back(self, cell: Cell) -> None:
        """Return an unbound cell to the free lists, merging it with free buddies upwards."""
        while True:
            parent = cell.parent
            if parent is None or parent.pinned is not None:
                break
            if not all(s.in_free for s in parent.children if s is not cell):
                break
            for s in parent.children:
                if s is not cell:
                    self.fl_remove(s)
            cell = parent
        self.fl_add(cell)

    def carve(self, target: Cell) -> None:
        """Take `target` out of the free lists, splitting the free cell that contains it."""
        path = []
        a = target
        while not a.in_free:
            path.append(a)
            a = a.parent
            if a is None:
                raise RuntimeError(f"{target} is not inside a free cell")
        self.fl_remove(a)
        for on_path in reversed(path):
            for s in on_path.parent.children:
                if s is not on_path:
                    self.fl_add(s)

    def free_container(self, cell: Cell) -> Cell | None:
        """The free cell containing `cell` (itself included), or None when part of it is bound."""
        a: Cell | None = cell
        while a is not None:
            if a.in_free:
                return a
            a = a.parent
        return None

    # ------------------------------------------------------------------ choosing a cell to bind
    def pick(self, level: int, dirty_ok: bool) -> Cell | None:
        """A healthy free cell of `level` to bind (not yet carved), or None.

        Order: a clean cell of that level (always safe); a clean higher cell to split, if safe; then,
        when `dirty_ok` (the caller will preempt opportunistic tasks), the cell of that level with the
        fewest opportunistic leaves, then a dirty higher cell to split, if safe.
        """
        clean = self.clean[level]
        if clean:
            return next(iter(clean.values()))
        for m in range(level + 1, self.top + 1):
            cm = self.clean[m]
            if cm and self.split_safe(m, level):
                return self._descend(next(iter(cm.values())), level)
        if not dirty_ok:
            return None
        best = self._least_dirty(self.free[level].values())
        if best is not None:
            return best
        for m in range(level + 1, self.top + 1):
            best = self._least_dirty(self.free[m].values())
            if best is not None and self.split_safe(m, level):
                return self._descend(best, level)
        return None

    @staticmethod
    def _least_dirty(cells) -> Cell | None:
        best = None
        for c in cells:
            if c.nbad == 0 and (best is None or c.opp < best.opp):
                best = c
                if c.opp == 0:
                    break
        return best

    @staticmethod
    def _descend(cell: Cell, level: int) -> Cell:
        """Inside a free cell, the level-l descendant with the least opportunistic usage (healthy)."""
        while cell.level > level:
            cell = min((c for c in cell.children if c.nbad == 0), key=lambda c: c.opp)
        return cell

    def pick_bad(self, level: int) -> Cell | None:
        """A bad free cell of `level` (splitting a bad higher one if needed) to doom, or None."""
        for c in self.free[level].values():
            if c.nbad > 0:
                return c
        for m in range(level + 1, self.top + 1):
            for c in self.free[m].values():
                if c.nbad > 0:
                    while c.level > level:
                        c = next(ch for ch in c.children if ch.nbad > 0)
                    return c
        return None
