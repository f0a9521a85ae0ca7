"""Property-based tests of HivedScheduler: a hypothesis state machine plays a toy controller.

Rules submit gangs (any VC, priority class prod/test/oppo, 1-3 tasks of 1/2/4/8 GPUs, sometimes a
`skuType`+`skuNum` or a `pinnedCellId`), schedule the queue (every submitted gang not placed yet),
stop preempted gangs (at once or later) and re-queue them as the controller does, finish running
gangs, withdraw waiting ones, restart the scheduler from the recorded placements (any restore order)
and flip node health. The oracle knows only the layout, the
requests and what the public API says (`Decision`, `placement_of`, `why_waiting`, `vc_status`,
`node_status`); `check_invariants` recomputes the scheduler's own counters.

Borrowing (a guaranteed gang that cannot start in its quota runs on idle cells elsewhere at
opportunistic level): which running gangs borrow is inferred from `vc_status` (`borrowed`,
`borrowed_jobs` per VC) and `node_status` (`opportunistic` leaves per node) by enumerating the
assignments consistent with both; a gang stays "unknown" while several are, and the checks that
need to know skip its VC. With `borrow=False` every guaranteed gang runs inside its quota.

P0  `check` accepts a gang iff it fits the VC's quota shape (the cluster, for opportunistic ones).
P1  cells: every placed leaf cell exists in the layout, lies on the task's node, matches its device
    index, and no leaf is held by two running gangs; pinned cells only hold gangs that name them.
P2  gangs are whole or nothing: a placed gang has one placement per (role, index) with exactly the
    leaves its request needs, on healthy nodes; a waiting gang holds nothing and has a wait reason.
P3  guaranteed quota is honoured (HiveD's promise, stated from public data only):
    a) a preemption reservation lasts, and once every listed victim has stopped the next schedule
       places the preemptor (unless a node turned bad or the scheduler restarted);
    b) a VC none of whose quota is in guaranteed use places its first waiting gang inside its quota
       at once, or reserves cells for it listing only preemptible victims (with a): two rounds);
    c) a guaranteed gang that waits without a reservation really does not fit: recomputing the VC's
       bound cells from the running placements (and checking them against `node_status`), no bound
       unit (less its VC's jobs of equal or higher priority) nor its unbound virtual cells can take it;
    d) victims are preemptible (opportunistic, borrowing) or lower-priority gangs of a waiting gang's
       own VC, and are listed once;
    e) an opportunistic gang (and, with borrowing, a guaranteed one without a reservation) never
       waits while one healthy idle node could take it whole.
P4  per VC: guaranteed used <= quota; `vc_status` equals the usage recomputed from placements;
    guaranteed leaves lie in cells bound to their own VC; opportunistic leaves per node match.
P5  `check_invariants` passes (after every step).
P6  a restart rebuilds the same placements, and no gang running inside its quota comes back as a
    borrower (preemptible by other VCs).

`test_properties` runs the machine over several configurations (layout, knobs); the properties are
the same in all. The seven scheduler bugs these properties found each keep a minimal regression test
(`test_bug_*`) at the end of the file. Examples are derandomized and use no database, so CI runs the
same examples every time.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import pytest
from hived_layouts import nodes_layout
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from openxpu_server.scheduler.base import (
    Decision,
    GangPlacement,
    GangRequest,
    SchedulerError,
    TaskRequest,
)
from openxpu_server.scheduler.hived import HivedScheduler
from openxpu_server.scheduler.hived.invariants import check_invariants
from openxpu_server.scheduler.layout import (
    cell_level,
    chain_levels,
    chains,
    iter_cells,
    leaf_cell_number,
    load_layout,
    node_level_type,
    vc_quota,
)
from openxpu_server.scheduler.layout_model import Layout

LAYOUTS = Path(__file__).resolve().parents[2] / "cluster" / "layouts"

PRIORITY = {"prod": 100, "test": 10, "oppo": -1}
PREEMPT_WAIT = re.compile(r"^waiting for \d+ preempted jobs? to stop")
PREEMPT_DONE = "preempted jobs stopped"
HOLD = "holding "

SETTINGS = settings(
    max_examples=50,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# One gang to submit: (VC index, priority class, GPUs per task, extra hived spec, skuNum).
GANG = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["prod", "test", "oppo"]),
    st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=3),
    st.sampled_from(["", "", "", "", "sku", "pin"]),
    st.sampled_from([1, 2, 4]),
)

# Non-vacuity: how often each property actually bit (not just had its precondition fail).
COUNTS: Counter[str] = Counter()


def two_nodes(vcs: dict) -> dict:
    """2 nodes x 8 GPUs: NVLink pairs, two sockets per node."""
    return {**nodes_layout(vcs, 2), "nodes": {"n1": {"hostIp": "127.0.1.1"}, "n2": {"hostIp": "127.0.1.2"}}}


def cells(path: str, n: int) -> dict:
    return {"cellType": path, "cellNumber": n}


# One cell type per VC: nodes, sockets and pairs (14 of 16 GPUs guaranteed).
TWO_NODES = two_nodes(
    {
        "a": {"virtualCells": [cells("GPU-NODE", 1)]},
        "b": {"virtualCells": [cells("GPU-NODE.GPU-SOCKET", 1)]},
        "c": {"virtualCells": [cells("GPU-NODE.GPU-SOCKET.GPU-PAIR", 1)]},
    }
)
# VCs mixing levels (socket + pair, pairs + a single GPU): binding levels matter on restore.
TWO_NODES_MIXED = two_nodes(
    {
        "a": {"virtualCells": [cells("GPU-NODE.GPU-SOCKET", 1), cells("GPU-NODE.GPU-SOCKET.GPU-PAIR", 1)]},
        "b": {"virtualCells": [cells("GPU-NODE.GPU-SOCKET", 1)]},
        "c": {
            "virtualCells": [
                cells("GPU-NODE.GPU-SOCKET.GPU-PAIR", 2),
                cells("GPU-NODE.GPU-SOCKET.GPU-PAIR.GPU", 1),
            ]
        },
    }
)


# ------------------------------------------------------------------------------------------ oracle
@dataclass(frozen=True)
class Leaf:
    address: str  # as in TaskPlacement.cells: "<node>/<...>/<leaf>"
    node: str
    device: int
    pinned: str | None
    ancestors: tuple[str, ...]  # full addresses from the top cell down to the leaf (index = depth)


@dataclass
class VcShape:
    """A VC's quota when it is one cell type (else None): HiveD binds whole cells of that level."""

    level: int
    depth: int  # index into Leaf.ancestors of a quota-level cell
    cells: int
    units_per_cell: int
    unit_size: int


@dataclass
class Model:
    """What the oracle derives from a layout, once per layout."""

    layout: Layout
    leaves: dict[str, Leaf]
    leaf_type: str
    node_size: int
    nodes: list[str]
    node_leaves: dict[str, list[str]]
    host_ip: dict[str, str]
    quota: dict[str, dict[str, int]]
    shapes: dict[str, VcShape | None]
    pins: dict[str, str]  # pinnedCellId -> owner VC
    pin_units: dict[str, list[list[str]]]  # pinnedCellId -> units (leaf addresses per node)
    units_of: dict[str, list[list[str]]] = field(default_factory=dict)  # quota-level cell -> units
    opp_cap: dict[str, int] = field(default_factory=dict)  # node -> leaves an opportunistic task may use


def build_model(layout: Layout) -> Model:
    [chain] = chains(layout)  # the layouts here are single-chain
    levels = chain_levels(layout, chain)
    top = len(levels)
    node_level = cell_level(layout, node_level_type(layout, chain))
    node_depth = top - node_level
    leaves: dict[str, Leaf] = {}
    path: list[str] = []
    for info in iter_cells(layout):
        depth = top - info.level
        del path[depth:]
        path.append(info.address)
        if info.level == 1:
            parts = info.address.split("/")
            addr = "/".join(parts[node_depth:])
            leaves[addr] = Leaf(addr, info.node, int(parts[-1]), info.pinned_in, tuple(path))
    node_leaves: dict[str, list[str]] = {}
    for lf in leaves.values():
        node_leaves.setdefault(lf.node, []).append(lf.address)
    node_size = leaf_cell_number(layout, levels[node_level - 1])
    shapes: dict[str, VcShape | None] = {}
    units_of: dict[str, list[list[str]]] = {}
    for name, vc in layout.virtual_clusters.items():
        types = {c.cell_type for c in vc.virtual_cells if c.cell_number}
        if len(types) != 1:
            shapes[name] = None
            continue
        [path_type] = types
        lv = cell_level(layout, path_type)
        size = leaf_cell_number(layout, path_type)
        shapes[name] = VcShape(
            level=lv,
            depth=top - lv,
            cells=sum(c.cell_number for c in vc.virtual_cells),
            units_per_cell=max(1, size // node_size),
            unit_size=min(size, node_size),
        )
        if any(cell in units_of for cell in {lf.ancestors[top - lv] for lf in leaves.values()}):
            continue  # a VC of the same level filed them
        by_unit: dict[tuple[str, str], list[str]] = {}
        for lf in leaves.values():
            cell = lf.ancestors[top - lv]
            by_unit.setdefault((cell, lf.node if lv >= node_level else cell), []).append(lf.address)
        for (cell, _unit), addresses in by_unit.items():
            units_of.setdefault(cell, []).append(addresses)
    pins = {p: name for name, vc in layout.virtual_clusters.items() for p in vc.pinned_cells}
    pin_units: dict[str, list[list[str]]] = {}
    for lf in leaves.values():
        if lf.pinned is not None:
            units = pin_units.setdefault(lf.pinned, [])
            for u in units:
                if leaves[u[0]].node == lf.node:
                    u.append(lf.address)
                    break
            else:
                units.append([lf.address])
    return Model(
        layout=layout,
        leaves=leaves,
        leaf_type=levels[0],
        node_size=node_size,
        nodes=list(node_leaves),
        node_leaves=node_leaves,
        host_ip={n: layout.nodes[n].host_ip for n in node_leaves},
        quota=vc_quota(layout),
        shapes=shapes,
        pins=pins,
        pin_units=pin_units,
        units_of=units_of,
        opp_cap={n: sum(1 for a in ls if leaves[a].pinned is None) for n, ls in node_leaves.items()},
    )


def ffd_fits(sizes: list[int], bins: list[int]) -> bool:
    """First-fit decreasing; exact here (power-of-two sizes into equal bins, or at most 3 items)."""
    free = sorted(bins)
    for k in sorted(sizes, reverse=True):
        for i, f in enumerate(free):
            if f >= k:
                free[i] = f - k
                break
        else:
            return False
    return True


def exact_fits(sizes: list[int], bins: list[int]) -> bool:
    """Exhaustive bin packing (at most 3 items)."""

    def go(i: int, free: list[int]) -> bool:
        if i == len(sizes):
            return True
        for j, f in enumerate(free):
            if f >= sizes[i]:
                free[j] -= sizes[i]
                if go(i + 1, free):
                    return True
                free[j] += sizes[i]
        return False

    return go(0, list(bins))


MODELS = {
    "two-nodes": build_model(load_layout(TWO_NODES)),
    "two-nodes-mixed": build_model(load_layout(TWO_NODES_MIXED)),
    "classroom": build_model(load_layout(LAYOUTS / "classroom.yaml")),
    "gpu-pod": build_model(load_layout(LAYOUTS / "gpu-pod.yaml")),
}


# ------------------------------------------------------------------------------------------ machine
def is_reservation(reason: str) -> bool:
    return bool(PREEMPT_WAIT.match(reason)) or reason.startswith((PREEMPT_DONE, HOLD))


class HivedMachine(RuleBasedStateMachine):
    MODEL: Model
    TIMEOUT: float | None = None
    BORROW = True
    GUARANTEED_TASKS = 3  # tasks per guaranteed gang at most (opportunistic gangs: always 1-3)
    RESTART = True
    CLASSES = ("prod", "test", "oppo")  # priority classes submitted (others are mapped onto these)
    ONE_WAITING = False  # at most one waiting guaranteed gang per VC

    def __init__(self) -> None:
        super().__init__()
        self.m = self.MODEL
        self.vcs = sorted(self.m.layout.virtual_clusters)
        self.s = self.new_scheduler()
        self.queue: dict[str, GangRequest] = {}
        self.running: dict[str, tuple[GangRequest, GangPlacement]] = {}
        self.borrower: dict[str, bool | None] = {}  # running guaranteed gang -> borrows (None: unknown)
        self.dying: set[str] = set()  # listed victims that have not stopped yet
        self.listed: set[str] = set()  # victims listed by this scheduler instance, not stopped yet
        self.bad: set[str] = set()
        self.epoch = 0  # bumped by restarts and nodes turning bad (both cancel reservations)
        self.reserved: dict[str, int] = {}  # waiting key -> epoch its reservation was seen in
        self.clock = 0
        self.n = 0

    def new_scheduler(self) -> HivedScheduler:
        return HivedScheduler(self.m.layout, reservation_timeout=self.TIMEOUT, borrow=self.BORROW)

    # ------------------------------------------------------------------ helpers
    def need(self, req: GangRequest) -> list[int]:
        """Leaves per task (the GPU count decides: cpu/memory are tiny; skuNum can ask for more)."""
        spec = req.hived.get("taskRoles", {}).get("w", {})
        return [max(t.gpu, spec.get("skuNum", 1)) for t in req.tasks]

    @staticmethod
    def pin_of(req: GangRequest) -> str | None:
        return req.hived.get("taskRoles", {}).get("w", {}).get("pinnedCellId")

    def leaves_of(self, key: str) -> list[str]:
        return [a for tp in self.running[key][1].tasks.values() for a in tp.cells]

    def in_quota(self, key: str) -> bool:
        """Running inside its VC's quota (a guaranteed gang known not to borrow)."""
        return self.running[key][0].priority >= 0 and self.borrower.get(key) is False

    def stop(self, key: str, requeue: bool) -> None:
        req, _p = self.running.pop(key)
        self.borrower.pop(key, None)
        self.s.release(key)
        self.dying.discard(key)
        self.listed.discard(key)
        if requeue:
            self.queue[key] = GangRequest(
                req.key,
                req.attempt + 1,
                req.user,
                req.virtual_cluster,
                req.priority,
                req.submit_time,
                req.tasks,
                req.gang,
                req.hived,
            )

    def idle_nodes(self) -> list[int]:
        """Leaves neither used nor reserved per healthy node without pinned cells."""
        return [x["free"] for n, x in self.s.node_status().items() if n not in self.bad and not x["pinned"]]

    def classify(self) -> None:
        """Infer which running guaranteed gangs borrow: every assignment of the unknown ones must match
        `borrowed`/`borrowed_jobs` per VC and `opportunistic` leaves per node; a gang is known once all
        matching assignments agree. No matching assignment at all is a failure (inconsistent views)."""
        m = self.m
        lt = m.leaf_type
        unknown = sorted(k for k, b in self.borrower.items() if b is None)
        status = self.s.vc_status()
        ns = self.s.node_status()
        jobs: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        per_node: Counter[str] = Counter()
        for key, (req, _p) in self.running.items():
            if req.priority < 0 or self.borrower.get(key):
                for a in self.leaves_of(key):
                    per_node[m.leaves[a].node] += 1
            if req.priority >= 0 and self.borrower.get(key):
                jobs[req.virtual_cluster] += 1
                leaves[req.virtual_cluster] += len(self.leaves_of(key))
        want_jobs = Counter({v: status[v][lt].get("borrowed_jobs", 0) for v in self.vcs})
        want_leaves = Counter({v: status[v][lt].get("borrowed", 0) for v in self.vcs})
        want_node = Counter({n: x["opportunistic"] for n, x in ns.items()})
        if len(unknown) > 10:
            return  # too many to enumerate (never seen here): they stay unknown
        solutions = []
        for bits in product((False, True), repeat=len(unknown)):
            j, lv, pn = Counter(jobs), Counter(leaves), Counter(per_node)
            for key, b in zip(unknown, bits, strict=True):
                if b:
                    vc = self.running[key][0].virtual_cluster
                    j[vc] += 1
                    lv[vc] += len(self.leaves_of(key))
                    for a in self.leaves_of(key):
                        pn[m.leaves[a].node] += 1
            if +j == +want_jobs and +lv == +want_leaves and +pn == +want_node:
                solutions.append(bits)
        assert solutions, (
            f"no set of borrowers explains vc_status borrowed={dict(+want_leaves)} jobs={dict(+want_jobs)} "
            f"and node_status opportunistic={dict(+want_node)}; known {self.borrower}"
        )
        for i, key in enumerate(unknown):
            values = {sol[i] for sol in solutions}
            if len(values) == 1:
                self.borrower[key] = values.pop()

    # ------------------------------------------------------------------ rules
    @rule(
        gangs=st.lists(GANG, min_size=1, max_size=3),
        dt=st.integers(0, 3000),
        then=st.sampled_from(["", "schedule", "schedule+stop"]),
    )
    def submit(self, gangs, dt, then):
        """Users submit gangs; `check` rejects what can never fit (P0: exactly that). The controller
        may schedule right after (so that swarm testing, which disables whole rules, rarely starves it)."""
        m = self.m
        self.clock += dt
        for vc, cls, sizes, extra, sku_num in gangs:
            vc = self.vcs[vc % len(self.vcs)]
            cls = self.CLASSES[list(PRIORITY).index(cls) % len(self.CLASSES)]
            prio = PRIORITY[cls]
            if prio >= 0:
                sizes = sizes[: self.GUARANTEED_TASKS]
                if self.ONE_WAITING and any(
                    r.virtual_cluster == vc and r.priority >= 0 for r in self.queue.values()
                ):
                    continue
            hived: dict = {}
            pins = sorted(p for p, owner in m.pins.items() if owner == vc)
            if extra == "pin" and pins and prio >= 0:
                hived = {"taskRoles": {"w": {"pinnedCellId": pins[0]}}}
            elif extra == "sku":
                hived = {"taskRoles": {"w": {"skuType": m.leaf_type, "skuNum": sku_num}}}
            self.n += 1
            tasks = [TaskRequest("w", i, 1, 100, g) for i, g in enumerate(sizes)]
            req = GangRequest(f"j{self.n}", 0, "u", vc, prio, self.clock, tasks, hived=hived)
            try:
                self.s.check(req)
                accepted = True
            except SchedulerError:
                accepted = False
            fits = self.fits_idle(req)
            if fits is not None:
                assert accepted == fits, (
                    f"check({req}) accepted={accepted}, fitting the idle quota says {fits}"
                )
            if accepted:
                self.queue[req.key] = req
                COUNTS["submitted"] += 1
        if then:
            self.schedule_now(stop_at_once=then.endswith("stop"))

    def fits_idle(self, req: GangRequest) -> bool | None:
        m = self.m
        sizes = self.need(req)
        if req.priority < 0:
            return exact_fits(sizes, [c for c in m.opp_cap.values() if c])
        pin = self.pin_of(req)
        if pin is not None:
            return exact_fits(sizes, [len(u) for u in m.pin_units[pin]])
        shape = m.shapes[req.virtual_cluster]
        if shape is None:
            return None
        return exact_fits(sizes, [shape.unit_size] * (shape.cells * shape.units_per_cell))

    @rule(stop_at_once=st.booleans())
    def schedule(self, stop_at_once):
        self.schedule_now(stop_at_once)

    def schedule_now(self, stop_at_once: bool) -> None:
        """One controller tick: schedule the queue, check P2/P3, act on the preemptions."""
        s = self.s
        pre_status = s.vc_status()
        pre_dying = set(self.dying)
        pre_queue = dict(self.queue)
        pre_running = {k: r for k, (r, _p) in self.running.items()}
        pre_borrower = dict(self.borrower)
        pre_reserved = {k for k, ep in self.reserved.items() if ep == self.epoch}
        d = s.schedule(list(self.queue.values()))  # P5: check_invariants runs after every rule
        placed = [p.key for p in d.placed]
        assert len(set(placed)) == len(placed), f"placed twice: {placed}"

        # P2: whole or nothing, on healthy nodes, with exactly the leaves asked for
        for p in d.placed:
            assert p.key in pre_queue, f"{p.key} placed but not queued"
            req = pre_queue[p.key]
            assert p.attempt == req.attempt
            assert set(p.tasks) == {(t.role, t.index) for t in req.tasks}, f"{p.key}: partial gang {p.tasks}"
            for t, k in zip(req.tasks, self.need(req), strict=True):
                tp = p.tasks[(t.role, t.index)]
                assert len(tp.cells) == k, f"{p.key} task {t.index}: {len(tp.cells)} cells, needs {k}"
                assert tp.node not in self.bad, f"{p.key} placed on bad node {tp.node}"
            del self.queue[p.key]
            self.running[p.key] = (req, p)
            if req.priority >= 0:
                self.borrower[p.key] = None
        self.classify()
        for key in placed:
            req = self.running[key][0]
            if req.priority < 0:
                COUNTS["placed opportunistic"] += 1
            elif self.borrower[key] is False:
                COUNTS["placed in quota"] += 1
            elif self.borrower[key]:
                assert self.BORROW, f"{key} borrows with borrow=False"
                COUNTS["placed borrowing"] += 1

        # P3a: a reservation whose victims have all stopped is committed by this schedule
        for key, ep in list(self.reserved.items()):
            if key in placed and ep == self.epoch:
                assert self.borrower.get(key) is not True, f"{key} reserved cells but runs as a borrower"
            if key in placed or key not in self.queue or ep != self.epoch:
                del self.reserved[key]
                continue
            assert pre_dying, f"{key} had a reservation, every victim stopped, yet: {s.why_waiting(key)}"
        COUNTS["P3a honoured"] += sum(1 for k in placed if k in pre_reserved)

        # P3d: victims are running, listed once, and preemptible by some waiting gang
        assert len(set(d.preempt)) == len(d.preempt), f"victim listed twice: {d.preempt}"
        for v in d.preempt:
            assert v in pre_running, f"victim {v} is not running"
            assert v not in self.listed, f"victim {v} listed again while it stops"
            vr = pre_running[v]
            if vr.priority < 0:
                COUNTS["preempted opportunistic"] += 1
            elif pre_borrower.get(v) is not False:
                COUNTS["preempted borrower"] += 1
            else:
                assert any(
                    r.virtual_cluster == vr.virtual_cluster and r.priority > vr.priority
                    for r in pre_queue.values()
                ), (
                    f"{v} (vc {vr.virtual_cluster}, prio {vr.priority}, in quota) preempted by no higher job of its VC"
                )
                COUNTS["preempted lower priority"] += 1

        # P2: a waiting gang holds no cells and says why it waits
        for key in self.queue:
            assert s.placement_of(key) is None, f"waiting {key} holds cells"
            info = s.why_waiting(key)
            assert info is not None and info.reason, f"waiting {key} has no reason"
            assert not info.reason.startswith(PREEMPT_DONE), f"{key}: {info.reason} (should have been placed)"
        for key in self.running:
            assert s.why_waiting(key) is None, f"running {key} has a wait reason"
        reasons = {k: s.why_waiting(k).reason for k in self.queue}
        # P3a: a reservation lasts until committed (or cancelled by a bad node or a restart)
        for key in self.reserved:
            assert is_reservation(reasons[key]), f"{key} lost its reservation: {reasons[key]}"

        self.check_first_gang_of_free_vcs(d, pre_status, pre_dying, pre_queue, placed, reasons)
        if not pre_dying and not d.preempt:
            self.check_waiting_gangs_do_not_fit(reasons, set(placed))
        self.check_idle_nodes_are_used(reasons)

        COUNTS["holds"] += sum(1 for r in reasons.values() if r.startswith(HOLD))
        # record reservations (P3a), then act on the preemptions like the controller
        for key, reason in reasons.items():
            if PREEMPT_WAIT.match(reason):
                self.reserved.setdefault(key, self.epoch)
        for v in d.preempt:
            self.dying.add(v)
            self.listed.add(v)
        if stop_at_once:
            self.stop_preempted()

    @precondition(lambda self: self.dying)
    @rule()
    def stop_preempted(self):
        for v in sorted(self.dying):
            self.stop(v, requeue=True)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def finish(self, data):
        self.stop(data.draw(st.sampled_from(sorted(self.running)), label="finish"), requeue=False)

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def withdraw(self, data):
        key = data.draw(st.sampled_from(sorted(self.queue)), label="withdraw")
        del self.queue[key]
        self.reserved.pop(key, None)

    @rule(data=st.data())
    def flip_health(self, data):
        node = data.draw(st.sampled_from(self.m.nodes), label="node")
        healthy = node in self.bad
        self.s.set_node_health(node, healthy)
        if healthy:
            self.bad.discard(node)
        else:
            self.bad.add(node)
            self.epoch += 1

    @precondition(lambda self: self.RESTART and self.running)
    @rule(data=st.data())
    def restart(self, data):
        """A new scheduler restores every running gang (the store's order is any order) in one
        `restore_all`, as the engine does, then learns the bad nodes. P6: same placements, and no gang
        that ran inside its quota comes back as a borrower; `vc_status` counts each guaranteed gang once,
        as a job in quota or as a borrower."""
        lt = self.m.leaf_type
        order = data.draw(st.permutations(sorted(self.running)), label="restore order")
        s = self.new_scheduler()
        s.restore_all(
            [
                (GangPlacement.from_json(k, p.attempt, p.to_json()), req)
                for k in order
                for req, p in [self.running[k]]
            ]
        )
        borrower: dict[str, bool | None] = {}
        jobs: Counter = Counter()
        for key in order:
            req, p = self.running[key]
            q = s.placement_of(key)
            assert q is not None and q.to_json() == p.to_json(), f"{key} restored as {q}, was {p}"
            if req.priority < 0:
                continue
            borrower[key] = q.borrowed
            jobs[req.virtual_cluster, q.borrowed] += 1
            assert self.borrower[key] is not False or not borrower[key], (
                f"{key} ran inside its quota and was restored as a borrower (preemptible by any VC)"
            )
        status = s.vc_status()
        for vc in self.vcs:
            x = status[vc].get(lt, {})
            got = (x.get("jobs", 0), x.get("borrowed_jobs", 0))
            assert got == (jobs[vc, False], jobs[vc, True]), (
                f"vc {vc}: (jobs, borrowed_jobs) {got} after restore"
            )
        for node in sorted(self.bad):
            s.set_node_health(node, False)
        self.s = s
        self.borrower = borrower
        self.epoch += 1
        self.listed.clear()
        COUNTS["restarts"] += 1

    # ------------------------------------------------------------------ P3 b, c, e
    def check_first_gang_of_free_vcs(self, d: Decision, pre_status, pre_dying, pre_queue, placed, reasons):
        """P3b: a VC with no guaranteed use, reservation or bad cell serves its first waiting gang now."""
        if pre_dying or self.bad:
            return
        for vc in self.vcs:
            if any(
                x["used"] or x["reserved"] or x["unhealthy"] or x["doomed"] for x in pre_status[vc].values()
            ):
                continue
            waiting = [r for r in pre_queue.values() if r.virtual_cluster == vc and r.priority >= 0]
            if not waiting:
                continue
            g0 = min(waiting, key=lambda r: (-r.priority, r.submit_time, r.key))
            if g0.key in placed:
                assert self.borrower[g0.key] is not True, f"{g0.key} borrows although vc {vc}'s quota is free"
                COUNTS["P3b placed"] += 1
                continue
            reason = reasons[g0.key]
            assert is_reservation(reason), (
                f"vc {vc} has no guaranteed job, yet its first gang {g0.key} {self.need(g0)} waits: {reason}"
            )
            assert d.preempt, f"{g0.key} reserved ({reason}) but no victim listed"
            # d.preempt also lists other VCs' victims; some must be preemptible for anyone (g0's)
            assert any(
                self.running[v][0].priority < 0 or self.borrower.get(v) is not False for v in d.preempt
            ), f"{g0.key} of idle vc {vc} reserved cells, but every victim {d.preempt} runs inside a quota"
            self.reserved[g0.key] = self.epoch  # P3a: placed once the victims stop
            COUNTS["P3b reserved"] += 1

    def check_waiting_gangs_do_not_fit(self, reasons: dict[str, str], fresh: set[str]):
        """P3c: a waiting guaranteed gang without a reservation has no room in its VC's cells."""
        m = self.m
        status = self.s.vc_status()
        ns = self.s.node_status()
        # cells of gangs placed by this schedule after the waiting gang was tried: not room it missed
        taken_now = {a for k in fresh if self.running[k][0].priority >= 0 for a in self.leaves_of(k)}
        for key, req in self.queue.items():
            if req.priority < 0:
                continue
            reason = reasons[key]
            if is_reservation(reason):
                COUNTS["P3c reserved"] += 1
                continue
            vc = req.virtual_cluster
            st_vc = status[vc].get(m.leaf_type, {})
            if st_vc.get("reserved") or st_vc.get("doomed") or st_vc.get("unhealthy"):
                continue  # documented: cells held for others, or bad hardware in the VC
            if any(
                is_reservation(reasons[k])
                for k, r in self.queue.items()
                if r.virtual_cluster == vc and k != key
            ):
                continue  # documented: another gang of the VC holds a reservation (preemption / hold)
            mine_keys = [
                k for k, (r, _p) in self.running.items() if r.virtual_cluster == vc and r.priority >= 0
            ]
            if any(self.borrower.get(k) is None for k in mine_keys):
                continue  # which of its gangs borrow is not known
            mine = {
                a: self.running[k][0].priority
                for k in mine_keys
                if self.in_quota(k)
                for a in self.leaves_of(k)
            }
            sizes = self.need(req)
            pin = self.pin_of(req)
            if pin is not None:
                units, unbound, unit_size = m.pin_units[pin], 0, 0
            else:
                shape = m.shapes[vc]
                if shape is None:
                    continue
                bound = {m.leaves[a].ancestors[shape.depth] for a in mine if m.leaves[a].pinned is None}
                # the VC's bound cells are exactly those of its guaranteed jobs (no reservation, no doom)
                want: Counter[str] = Counter()
                for lf in m.leaves.values():
                    if lf.ancestors[shape.depth] in bound or (lf.pinned and m.pins.get(lf.pinned) == vc):
                        want[lf.node] += 1
                got = Counter({n: x["vcs"].get(vc, 0) for n, x in ns.items()})
                assert +got == +want, (
                    f"vc {vc} bound leaves per node {dict(+got)}, its jobs need {dict(+want)}"
                )
                units = [u for c in sorted(bound) for u in m.units_of[c]]
                unbound = 0 if self.bad else (shape.cells - len(bound)) * shape.units_per_cell
                unit_size = shape.unit_size
            avail = [
                sum(1 for a in u if mine.get(a, -1) < req.priority and a not in taken_now)
                for u in units
                if m.leaves[u[0]].node not in self.bad
            ]
            best = max(avail, default=0)
            fits = (
                (len(sizes) == 1 and (best >= sizes[0] or (unbound > 0 and unit_size >= sizes[0])))
                or best >= sum(sizes)
                or (unbound > 0 and ffd_fits(sizes, [unit_size] * unbound))
            )
            assert not fits, (
                f"{key} (vc {vc}, prio {req.priority}, tasks {sizes}) waits although it fits: room per bound "
                f"unit {avail} + {unbound} unbound units of {unit_size}; reason: {reason}"
            )
            COUNTS["P3c legit wait"] += 1

    def check_idle_nodes_are_used(self, reasons: dict[str, str]):
        """P3e: an opportunistic gang (or, with borrowing, an unpinned guaranteed one) without a
        reservation never waits while one healthy node has idle room for it all."""
        idle = max(self.idle_nodes(), default=0)
        for key, req in self.queue.items():
            if req.priority >= 0 and (not self.BORROW or self.pin_of(req) or is_reservation(reasons[key])):
                continue
            sizes = self.need(req)
            assert idle < sum(sizes), (
                f"{key} (prio {req.priority}) {sizes} waits with {idle} idle on a node: {reasons[key]}"
            )
            COUNTS["P3e legit wait"] += 1

    # ------------------------------------------------------------------ invariants after every step
    @invariant()
    def cells_are_exclusive_and_real(self):
        m = self.m
        owner: dict[str, str] = {}
        for key, (req, p) in self.running.items():
            cur = self.s.placement_of(key)
            assert cur is not None and cur.to_json() == p.to_json(), f"{key}: placement changed to {cur}"
            pin = self.pin_of(req)
            for tp in p.tasks.values():
                assert tp.host_ip == m.host_ip.get(tp.node), f"{key}: unknown node {tp.node}"
                for a in tp.cells:
                    lf = m.leaves.get(a)
                    assert lf is not None, f"{key}: {a} is not a leaf cell of the layout"
                    assert lf.node == tp.node, f"{key}: {a} is not on {tp.node}"
                    assert a not in owner, f"{a} held by {owner[a]} and {key}"
                    assert lf.pinned == pin, f"{key} (pin {pin}) on {a} (pinned cell {lf.pinned})"
                    owner[a] = key
                assert tp.gpus == [m.leaves[a].device for a in tp.cells], f"{key}: gpus {tp.gpus} != cells"
        for key in self.queue:
            assert self.s.placement_of(key) is None, f"waiting {key} holds cells"

    @invariant()
    def vc_usage_matches_placements(self):
        self.classify()
        m = self.m
        lt = m.leaf_type
        status = self.s.vc_status()
        g_leaves: Counter[str] = Counter()
        g_jobs: Counter[str] = Counter()
        q_leaves: Counter[str] = Counter()
        q_jobs: Counter[str] = Counter()
        opp: Counter[str] = Counter()
        unknown: set[str] = set()
        per_node: dict[str, Counter[str]] = {}
        for key, (req, _p) in self.running.items():
            vc = req.virtual_cluster
            n = len(self.leaves_of(key))
            if req.priority < 0:
                opp[vc] += n
                continue
            g_leaves[vc] += n
            g_jobs[vc] += 1
            if self.borrower.get(key) is None:
                unknown.add(vc)
            elif self.in_quota(key):
                q_leaves[vc] += n
                q_jobs[vc] += 1
                for a in self.leaves_of(key):
                    per_node.setdefault(m.leaves[a].node, Counter())[vc] += 1
        for vc in self.vcs:
            x = status[vc].get(lt)
            assert x is not None, f"vc {vc} missing from vc_status"
            assert x["guaranteed"] == m.quota[vc].get(lt, 0)
            assert x["used"] <= x["guaranteed"], f"vc {vc} uses {x['used']} > quota {x['guaranteed']}"  # P4
            assert x["free"] == max(0, x["guaranteed"] - x["used"] - x["reserved"] - x["unhealthy"]), x
            assert x["opportunistic_used"] == opp[vc], f"vc {vc}: {x} but opportunistic leaves {opp[vc]}"
            got = (x["used"] + x.get("borrowed", 0), x["jobs"] + x.get("borrowed_jobs", 0))
            assert got == (g_leaves[vc], g_jobs[vc]), (
                f"vc {vc}: {x} but guaranteed {g_leaves[vc]} in {g_jobs[vc]}"
            )
            if vc not in unknown:
                assert (x["used"], x["jobs"]) == (q_leaves[vc], q_jobs[vc]), (
                    f"vc {vc}: {x} but {q_leaves[vc]} leaves in {q_jobs[vc]} gangs inside its quota"
                )
        for node, x in self.s.node_status().items():
            assert sum(x["vcs"].values()) <= x["leaves"]
            for vc, n in per_node.get(node, Counter()).items():
                assert x["vcs"].get(vc, 0) >= n, f"{node}: {n} leaves of vc {vc} jobs, {x['vcs']} bound"

    @invariant()
    def internal_counters(self):
        check_invariants(self.s)


def machine(name: str, **knobs) -> type[HivedMachine]:
    """The machine for layout `name`; `knobs` override the class attributes (TIMEOUT, BORROW, ...)."""
    return type(f"Hived_{name}", (HivedMachine,), {"MODEL": MODELS[name], **knobs})


def run_machine(name: str, steps: int = 40, **knobs) -> Counter[str]:
    """Run one configuration (`steps` rules per example); returns how often each property's
    precondition held."""
    COUNTS.clear()
    run_state_machine_as_test(machine(name, **knobs), settings=settings(SETTINGS, stateful_step_count=steps))
    return Counter(COUNTS)


# ------------------------------------------------------------------------------------------ tests
# Each configuration: layout, knobs, and the checks that must have bitten (non-vacuity). The narrow ones
# (no opportunistic jobs, one waiting gang per VC, ...) reach corners the broad ones visit rarely.
NO_OPP = {"CLASSES": ("prod", "test"), "BORROW": False}
ONE_GANG = {"CLASSES": ("prod", "oppo"), "BORROW": False, "GUARANTEED_TASKS": 1, "ONE_WAITING": True}
QUOTA = ("placed in quota", "P3b placed", "P3c legit wait", "restarts")
INTRA_VC = (*QUOTA, "preempted lower priority", "P3a honoured")
OPP = ("placed opportunistic", "preempted opportunistic", "P3a honoured", "P3b placed", "P3e legit wait")
EVERYTHING = (*INTRA_VC, *OPP)
CONFIGS = [
    pytest.param("two-nodes", NO_OPP, INTRA_VC, id="two-nodes"),
    pytest.param("gpu-pod", NO_OPP, INTRA_VC, id="gpu-pod"),
    pytest.param("classroom", NO_OPP, QUOTA, id="classroom"),
    pytest.param("classroom", ONE_GANG, (*OPP, "restarts"), id="classroom-opportunistic"),
    pytest.param("two-nodes", {**NO_OPP, "CLASSES": ("prod",), "TIMEOUT": 1}, (*QUOTA, "holds"), id="holds"),
    pytest.param("two-nodes-mixed", {**NO_OPP, "RESTART": False}, INTRA_VC[:3], id="mixed-levels"),
    pytest.param("two-nodes", ONE_GANG, (*OPP, "restarts"), id="two-nodes-opportunistic"),
    pytest.param("gpu-pod", ONE_GANG, (*OPP, "restarts"), id="gpu-pod-opportunistic"),
    pytest.param("two-nodes", {"BORROW": False}, EVERYTHING, id="two-nodes-everything"),
    pytest.param("two-nodes-mixed", NO_OPP, INTRA_VC, id="mixed-levels-restart"),
    # borrowing defers intra-VC preemption until the cluster is full: longer runs get there
    pytest.param("two-nodes", {"steps": 80}, EVERYTHING, id="two-nodes-borrowing"),
    pytest.param("gpu-pod", {"TIMEOUT": 5, "steps": 80}, EVERYTHING, id="gpu-pod-borrowing"),
]


@pytest.mark.parametrize(("layout", "knobs", "bites"), CONFIGS)
def test_properties(layout, knobs, bites):
    counts = run_machine(layout, **knobs)
    # not vacuous: each property's precondition held and it was checked
    missing = [b for b in bites if not counts[b]]
    assert not missing, f"never exercised: {missing}; counts {dict(counts)}"


# ------------------------------------------------------------------------------------------ regressions
# Minimal examples of the bugs the properties found (each failed before its fix).
def one_node(vcs: dict, borrow: bool = True) -> HivedScheduler:
    """One 8-GPU node (pairs, sockets); `vcs`: name -> virtual cells."""
    layout = two_nodes({name: {"virtualCells": c} for name, c in vcs.items()})
    layout["physicalCluster"]["physicalCells"] = layout["physicalCluster"]["physicalCells"][:1]
    del layout["nodes"]
    return HivedScheduler(load_layout(layout), borrow=borrow)


def gang(key: str, vc: str, prio: int, gpus: list[int], t: int = 0) -> GangRequest:
    return GangRequest(key, 0, "u", vc, prio, t, [TaskRequest("w", i, 1, 100, g) for i, g in enumerate(gpus)])


def nodes_of(s: HivedScheduler, key: str) -> list[str]:
    return [tp.node for tp in s.placement_of(key).tasks.values()]


def in_quota(s: HivedScheduler, vc: str) -> tuple[int, int]:
    """(leaves, gangs) of `vc`'s guaranteed gangs running inside its quota."""
    x = s.vc_status()[vc]["GPU"]
    return x["used"], x["jobs"]


def test_bug_scan_memo_gang_of_two_tasks_preempts_an_opportunistic_job():
    # v owns the node; an opportunistic job fills it. A 2 x 1-GPU gang of v must preempt it, as a
    # 1 x 2-GPU gang does. It waits forever instead ("the gang needs 2 nodes with 1 free GPU each").
    for gpus in ([2], [1, 1]):
        s = one_node({"v": [cells("GPU-NODE", 1)]}, borrow=False)
        s.schedule([gang("opp", "v", -1, [8])])
        assert s.schedule([gang("x", "v", 100, gpus)]).preempt == ["opp"], (gpus, s.why_waiting("x"))


def test_bug_scan_memo_second_gang_of_the_pass_preempts_an_opportunistic_job():
    # v owns one socket; an opportunistic job uses 6 GPUs over both sockets. "a" binds a dirty socket
    # and takes its free GPU; "b" needs 2 GPUs of that socket and must preempt the opportunistic job.
    s = one_node({"v": [cells("GPU-NODE.GPU-SOCKET", 1)]}, borrow=False)
    s.schedule([gang("opp", "v", -1, [2, 2, 2])])
    d = s.schedule([gang("a", "v", 100, [1], t=1), gang("b", "v", 100, [2], t=2)])
    assert [p.key for p in d.placed] == ["a"]
    assert d.preempt == ["opp"], s.why_waiting("b")


def test_bug_gang_placed_and_preempted_in_one_decision():
    s = one_node({"v": [cells("GPU-NODE", 1)]}, borrow=False)
    s.schedule([gang("opp", "v", -1, [8])])
    low = gang("low", "v", 10, [8], t=1)
    assert s.schedule([low]).preempt == ["opp"]
    s.release("opp")  # the victim stopped: low's reservation is committed by the next schedule ...
    d = s.schedule([low, gang("high", "v", 100, [8], t=2)])
    # ... which must not also list it as a victim (the controller would start and kill it at once)
    assert not {p.key for p in d.placed} & set(d.preempt), d


def test_bug_borrow_pass_skips_the_next_gang():
    s = HivedScheduler(load_layout(two_nodes({"v1": {"virtualCells": [cells("GPU-NODE", 1)]}})))
    q = [gang("a", "v1", 100, [8]), gang("b", "v1", 100, [1], 1), gang("c", "v1", 100, [4], 2)]
    d = s.schedule([*q, gang("e", "v1", 10, [4], 3)])
    # a fills v1's quota; b, c (prio 100) and e (prio 10) can borrow n2: b and c, not e, fit there
    assert [p.key for p in d.placed] == ["a", "b", "c"], s.why_waiting("c")


def test_bug_same_shape_gang_never_borrows():
    s = HivedScheduler(load_layout(two_nodes({"v1": {"virtualCells": [cells("GPU-NODE", 1)]}})))
    s.schedule([gang("a", "v1", 100, [8])])
    q = [gang("b", "v1", 100, [1], 1), gang("c", "v1", 100, [1], 2)]
    d = s.schedule(q)  # both can borrow n2; c waits while 7 GPUs stay idle, until some cell is freed
    assert [p.key for p in d.placed] == ["b", "c"], s.why_waiting("c")


def test_bug_restore_borrower_first_takes_the_quota_of_the_gang_in_quota():
    layout = load_layout(
        two_nodes(
            {"v1": {"virtualCells": [cells("GPU-NODE", 1)]}, "v2": {"virtualCells": [cells("GPU-NODE", 1)]}}
        )
    )
    s = HivedScheduler(layout)
    reqs = {"prod": gang("prod", "v1", 100, [8]), "test": gang("test", "v1", 10, [8], 1)}
    s.schedule(list(reqs.values()))  # prod inside v1's quota, test borrows v2's idle node
    assert in_quota(s, "v1") == (8, 1) and nodes_of(s, "test") == ["n2"]
    fresh = HivedScheduler(layout)
    for key in ("test", "prod"):  # the store returns jobs in any order
        fresh.restore(s.placement_of(key), reqs[key])
    # v2 reclaims its node: the borrower (test) must be the victim, not v1's prod job
    assert fresh.schedule([gang("own", "v2", 0, [8], 5)]).preempt == ["test"]


def test_bug_restore_mixed_levels():
    s = one_node(
        {"a": [cells("GPU-NODE.GPU-SOCKET", 1), cells("GPU-NODE.GPU-SOCKET.GPU-PAIR", 1)]}, borrow=False
    )
    reqs = {
        "x": gang("x", "a", 100, [2]),
        "j1": gang("j1", "a", 100, [1], 1),
        "j2": gang("j2", "a", 100, [2], 2),
    }
    s.schedule(list(reqs.values()))  # x binds the pair; j1 and j2 share the bound socket
    s.release("x")
    assert in_quota(s, "a") == (3, 2)
    fresh = one_node(
        {"a": [cells("GPU-NODE.GPU-SOCKET", 1), cells("GPU-NODE.GPU-SOCKET.GPU-PAIR", 1)]}, borrow=False
    )
    for key in ("j1", "j2"):
        fresh.restore(s.placement_of(key), reqs[key])
    assert in_quota(fresh, "a") == (3, 2)  # j1 is restored into a pair, so j2 no longer fits the quota


def test_bug_restore_after_marking_bad_nodes_downgrades_gangs_in_quota():
    layout = MODELS["two-nodes"].layout  # a: a node, b: a socket, c: a pair
    s = HivedScheduler(layout, borrow=False)
    req = gang("j1", "a", 100, [1])
    s.schedule([req])
    s.set_node_health(nodes_of(s, "j1")[0], False)  # j1 keeps running there, inside a's quota
    fresh = HivedScheduler(layout, borrow=False)
    fresh.set_node_health(nodes_of(s, "j1")[0], False)  # the engine knows the node is bad ...
    fresh.restore(s.placement_of("j1"), req)  # ... before it restores the placements
    assert in_quota(fresh, "a") == (1, 1)
