"""The scheduler's bookkeeping records: VC pools, waiting gangs, placed gangs and reservations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base import GangPlacement, GangRequest, TaskRequest
from .buckets import Buckets

if TYPE_CHECKING:
    from .buddy import Chain
    from .cells import Cell, Node


class Pool:
    """The cells one VC may place guaranteed tasks on in one chain (or in one pinned cell).

    `quota[l]` virtual cells of level l; `unbound[l]` of them are not bound to a physical cell yet.
    Bound cells offer *units* (nodes, or the bound cell itself when it is below the node level: a task
    never spans two of a VC's cells below a node, HiveD pai#4029), filed by free leaves for packing.
    """

    __slots__ = (
        "vc",
        "chain",
        "pinned",
        "key",
        "quota",
        "unbound",
        "bound",
        "units",
        "units_all",
        "free",
        "opp",
        "used",
        "reserved",
        "dying",
        "doomed",
        "quota_leaves",
        "max_unit",
        "pidx",
        "jobs",
    )

    def __init__(self, vc: VcState | None, chain: Chain, pinned: str | None = None):
        self.vc = vc
        self.chain = chain
        self.pinned = pinned
        self.key = f"pin:{pinned}" if pinned else chain.name
        self.quota = [0] * (chain.top + 1)
        self.unbound = [0] * (chain.top + 1)
        self.bound: dict[int, Cell] = {}
        self.units = Buckets(chain.node_size)
        self.units_all: dict[int, Cell] = {}
        self.free = 0  # free leaves in healthy units
        self.opp = 0  # leaves of bound cells used by opportunistic gangs
        self.used = 0  # leaves used by the VC's guaranteed gangs
        self.reserved = 0  # leaves reserved (preemption or hold)
        self.dying = 0  # leaves used by gangs being preempted
        self.doomed = 0  # doomed cells bound
        self.quota_leaves = 0
        self.max_unit = 0  # the largest unit its quota can offer
        # Preemption indexes, created on first use per priority threshold p (0 = opportunistic only):
        # units filed by an upper bound of the leaves a gang of priority p could get there by preempting.
        self.pidx: dict[int, Buckets] = {}
        self.jobs = 0  # running guaranteed gangs with leaves in it

    def unbound_units(self, k: int) -> int:
        """Placement units of at least k leaves its unbound virtual cells would offer."""
        chain = self.chain
        n = 0
        for lv, cells in enumerate(self.unbound):
            if cells and chain.unit_size(lv) >= k:
                n += cells * (chain.size[lv] // chain.node_size if lv >= chain.node_level else 1)
        return n

    def unbound_leaves(self) -> int:
        size = self.chain.size
        return sum(n * size[lv] for lv, n in enumerate(self.unbound) if n)

    def largest_unbound_unit(self) -> int:
        for lv in range(self.chain.top, 0, -1):
            if self.unbound[lv]:
                return self.chain.unit_size(lv)
        return 0


class VcState:
    """A virtual cluster: its pools, waiting order, failure cache and counters."""

    def __init__(self, name: str):
        self.name = name
        self.pools: dict[str, Pool] = {}  # chain name -> pool
        self.pinned: dict[str, Pool] = {}  # pinnedCellId -> pool
        self.version = 0  # bumped whenever its cells get freer: cached failures are then stale
        self.seen_version = -1
        self.failed: dict[tuple, tuple] = {}  # shape -> failure record, valid at seen_version
        self.order: list[tuple] = []  # order keys of all its waiting gangs (positions)
        self.gorder: list[tuple] = []  # order keys of its waiting guaranteed gangs (scheduling)
        self.shapes: dict[tuple, int] = {}  # shapes of eligible waiting guaranteed gangs -> count
        self.fresh: list[Waiter] = []  # guaranteed gangs new since the last pass
        self.prio_leaves: dict[int, int] = {}  # priority -> leaves used by its guaranteed gangs
        self.jobs: dict[str, int] = {}  # leaf type -> running guaranteed gangs
        self.opp_used: dict[str, int] = {}  # leaf type -> leaves used by its opportunistic gangs
        self.borrowed: dict[str, int] = {}  # leaf type -> leaves its gangs borrow outside its quota
        self.borrow_jobs: dict[str, int] = {}  # leaf type -> its gangs running on borrowed cells
        self.hold: Reservation | None = None

    def all_pools(self) -> list[Pool]:
        return [*self.pools.values(), *self.pinned.values()]


@dataclass
class TaskDemand:
    """One task with where it may go: [(pool or chain, leaf cells)] in order of preference."""

    task: TaskRequest
    options: list[tuple[object, int]]
    kmax: int


@dataclass
class Waiter:
    """A gang in the queue: its parsed demand, order key and last failure."""

    key: str
    attempt: int
    req: GangRequest
    vc: VcState | None
    prio: int
    okey: tuple
    tasks: list[TaskDemand]
    shape: tuple
    error: str | None = None
    fail: tuple | None = None
    reservation: Reservation | None = None
    # (chain name, leaf cells) per task when it may borrow idle cells outside its quota (guaranteed,
    # no pinned cells), else None; failures to borrow are cached per this key
    bkey: tuple | None = None
    bfail: tuple | None = None  # why borrowing failed (an opportunistic-style failure record)

    @property
    def guaranteed(self) -> bool:
        return self.prio >= 0


@dataclass
class Held:
    """A placed gang: which leaves each task holds. `prio` is the priority its leaves carry (-1 for
    opportunistic gangs and borrowers); `borrowed`: a guaranteed gang running on idle cells outside
    its VC's quota, preemptible like an opportunistic one."""

    key: str
    attempt: int
    vc: VcState | None
    prio: int
    tasks: list[tuple[TaskRequest, Node, list[Cell]]]
    placement: GangPlacement
    borrowed: bool = False

    @property
    def guaranteed(self) -> bool:
        return self.prio >= 0


@dataclass
class Reservation:
    """Cells reserved for a waiting gang: for a preemption (victims stopping) or an anti-starvation hold."""

    waiter: Waiter
    kind: str  # "preempt" | "hold"
    picks: list[tuple[TaskRequest, Node, list[Cell]]]
    victims: set[str]
    spent: float = 0.0  # seconds spent planning it (decision-time instrumentation)

    @property
    def key(self) -> str:
        return self.waiter.key
