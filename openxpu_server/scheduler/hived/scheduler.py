"""`HivedScheduler`: HiveD's cell algorithm (scheduling.md §1.4-1.9) behind the `Scheduler` interface.

Model, in the terms of the HiveD paper:

- **Cells and chains.** The layout's physical cells form one tree per chain (top cell type). Each
  chain has a buddy allocator (`buddy.Chain`): free lists of the unbound cells per level.
- **Virtual clusters.** A VC owns *virtual cells* (quota) per chain and level, plus pinned cells. A
  virtual cell is bound to a physical cell of the same level only while the VC uses it (dynamic
  binding), so idle quota can be served by any physical cell, avoiding bad and busy hardware. A bound
  cell is owned by its VC alone (identity mapping inside it), which makes intra-VC placement simply
  "place inside my bound cells, else bind one more". A cell is unbound when the VC's last task in it
  ends, and buddies merge again.
- **Placement** of a guaranteed task (priority 0..1000) of k leaf cells: (a) among the VC's units
  (nodes of its bound cells, or a bound cell below the node level) the one with the fewest free leaves
  that still fits k (packing), and inside it the lowest common ancestor with the fewest free leaves
  (affinity: two 4-GPU tasks get one socket each); (b) else bind a new virtual cell, the smallest level
  whose unit fits k, taking a clean free cell of exactly that level or safely splitting a higher one.
  Gangs are placed transactionally: every change is journaled and undone when a task does not fit.
- **Opportunistic** gangs (priority < 0) use idle leaves of any node, unbound nodes first, packed, never
  pinned cells; they are preempted first.
- **Preemption.** When (a)/(b) fail, the gang tries again counting opportunistic leaves as free (and
  binding "dirty" free cells), then counting its own VC's lower-priority gangs as free. A successful
  plan *reserves* the chosen leaves for the preemptor and returns the victims in `Decision.preempt`;
  reserved leaves are invisible to every other gang, so two preemptors never evict the same victims
  for the same cells. Victims listed once stay "dying" until released (others may count their leaves
  as free-soon without listing them again). Once the controller has `release`d them, the next
  `schedule` places the preemptor on exactly the reserved leaves. A reservation is cancelled when the
  gang leaves the queue, is `release`d, or a node of it turns bad.
- **Borrowing** (`borrow=True`, the default). Order for a guaranteed gang: its quota without
  preemption, then its quota preempting opportunistic gangs and borrowers (VC passes); then, after
  all VCs' passes, the *borrow pass* (all VCs' waiting guaranteed gangs, by priority then submit
  time): the gang is placed on idle cells anywhere exactly like an opportunistic gang (nothing bound,
  so VC safety is untouched), its leaves marked priority -1: any VC's guaranteed gang reclaims them
  like opportunistic ones (it is listed in `Decision.preempt`), and a borrower never preempts. Only
  when borrowing fails does the gang preempt lower-priority gangs of its own VC (deferred from its VC
  pass, `_lower_pending`), so idle cells are used before running work is thrown away. Borrowers are
  not migrated into freed quota. `vc_status` counts them as `borrowed`; `restore` turns a guaranteed
  gang whose cells cannot be bound to its VC into a borrower (HiveD's downgrade).
- **VC safety.** Binding never makes another VC's unbound quota unsatisfiable (`Chain.split_safe`).
  Bad nodes: when healthy free cells no longer cover all VCs' unbound quota, bad free cells are bound
  to VCs as *doomed* cells (HiveD §1.9) so the shortage is visible in that VC (`vc_status`) instead of
  making binds fail everywhere; they are unbound when the hardware is healthy again.
- **Queue order and backfill.** Within a VC: priority, then submit time, then key. A gang that does
  not fit is skipped and later ones may start (no head-of-line blocking), VCs are independent, and
  opportunistic gangs go last.
- **Anti-starvation** (`reservation_timeout` seconds, None = off as in HiveD): when a guaranteed gang
  that is waiting has a later gang of its VC considered for placement that was submitted more than
  `reservation_timeout` seconds after it, the waiting gang gets a *hold*: the cells it would use
  (most free first) are reserved for it, running gangs on them finish normally (opportunistic ones
  are preempted), and nothing else is placed there. One hold per VC at a time, the oldest first.
  The rule compares submit times, not wall time, so simulations and tests are deterministic.
- **Speed.** Units and nodes live in buckets by free count (`Buckets`), so a task is placed in O(1);
  each VC has a version bumped whenever its cells get freer, and failures are cached per *shape*
  (priority + leaf counts), so an unchanged VC is not rescanned and a pass stops once every waiting
  shape has failed.

Gangs with `gang: False` are still placed whole (the controller binds a whole placement); the
`affinityGroupName` of a role is accepted, and all tasks of a gang are packed as one affinity group.
`why_waiting(key).position` is the 1-based position among the waiting gangs of the same VC in
scheduling order (opportunistic ones after the guaranteed ones). A waiting gang's request is read when
its key first appears in the queue (or reappears after leaving it); reservations and holds live in
memory only, so after a restart preemptors plan again from the restored placements.
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable, Iterable, Sequence

from ..base import (
    Decision,
    GangPlacement,
    GangRequest,
    Scheduler,
    SchedulerError,
    TaskPlacement,
    TaskRequest,
    WaitInfo,
)
from ..layout_model import Layout
from .buckets import Buckets
from .buddy import Chain
from .cells import Cell, Node, Topology
from .demand import leaves_for, role_spec
from .state import Held, Pool, Reservation, TaskDemand, VcState, Waiter

FREE, PREEMPT_OPP, PREEMPT_LOWER, HOLD = 0, 1, 2, 3
Pick = tuple[TaskRequest, Node, list[Cell]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class HivedScheduler(Scheduler):
    """HiveD-style cell scheduler over a `Layout`; see the module docstring for the model.

    `borrow`: guaranteed gangs that cannot start in their VC's quota run on idle cells elsewhere as
    preemptible borrowers (default True; False = HiveD as published: they wait).
    `reservation_timeout`: seconds (compared between submit times) after which a waiting guaranteed
    gang gets an anti-starvation hold once newer gangs of its VC are being placed; None (default,
    HiveD's own behaviour) backfills forever. Placements carry leaf cell addresses
    (`<node>/<...>/<leaf>`, see `cells.py`) that `restore` reads back; `set_node_health` marks nodes
    bad or healthy (all start healthy); `vc_status`, `node_status` and `free_nodes` are read-only views.
    """

    def __init__(self, layout: Layout, *, reservation_timeout: float | None = None, borrow: bool = True):
        self.layout = layout
        self.reservation_timeout = reservation_timeout
        self.borrow = borrow
        self.topo = Topology(layout)
        self._cells = self.topo.cells
        self._nodes = self.topo.nodes
        self._chains = self.topo.chains
        self._chains_by_leaf: dict[str, list[Chain]] = {}
        for chain in self._chains.values():
            self._chains_by_leaf.setdefault(chain.leaf_type, []).append(chain)
        # Optional instrumentation (benchmarks): seconds spent deciding each placed gang.
        self.decision_times: list[float] | None = None
        self._clock: Callable[[], float] = time.perf_counter
        self._waiters: dict[str, Waiter] = {}
        self._held: dict[str, Held] = {}
        self._reservations: dict[str, Reservation] = {}
        self._dying: dict[str, set[str]] = {}  # victim key -> preemptors that listed it
        self._orphans: list[tuple] = []  # order keys of waiting gangs of unknown VCs
        self._opp_order: list[tuple] = []
        self._opp_version = 0
        self._opp_seen = -1
        self._opp_failed: dict[tuple, tuple] = {}
        self._opp_shapes: dict[tuple, int] = {}
        self._opp_fresh: list[Waiter] = []
        self._capacity_cache: dict[int, dict[int, int]] = {}  # pool/chain -> {unit size: count} when idle
        # (pool, mode, priority) -> smallest task size whose preemption scan found no unit this pass;
        # dropped for a pool when a cell is bound to it (`_bind`), the one way its units grow in a pass
        self._scan_memo: dict[tuple, int] = {}
        # borrowing: failures per Waiter.bkey, valid while _opp_version (cells getting freer) is unchanged
        self._borrow_failed: dict[tuple, tuple] = {}
        self._borrow_seen = -1
        self._borrow_full = True  # the next borrow pass considers every waiting guaranteed gang
        self._borrow_fresh: list[Waiter] = []  # guaranteed gangs that failed in this call's VC passes
        self._lower_pending: dict[str, Waiter] = {}  # intra-VC preemption deferred until borrowing failed
        self._placed_now: set[str] = set()  # gangs placed by this schedule() call: never victims in it
        self._bkey_cache: dict[tuple, tuple | None] = {}

        for chain in self._chains.values():
            for top in chain.tops:
                chain.fl_add(top)
        self._vcs: dict[str, VcState] = {}
        self._pin_owner: dict[str, str] = {}
        for name, spec in layout.virtual_clusters.items():
            vc = self._vcs[name] = VcState(name)
            for vcell in spec.virtual_cells:
                if vcell.cell_number <= 0:
                    continue
                parts = vcell.cell_type.split(".")
                chain = self._chains.get(parts[0])
                if chain is None:
                    raise ValueError(f"virtualClusters.{name}: {parts[0]} is not a chain of this layout")
                level = chain.top - (len(parts) - 1)
                if level < 1 or [chain.types[chain.top - i] for i in range(len(parts))] != parts:
                    raise ValueError(
                        f"virtualClusters.{name}: {vcell.cell_type} is not a path of chain {chain.name}"
                    )
                pool = vc.pools.get(chain.name) or vc.pools.setdefault(chain.name, Pool(vc, chain))
                pool.quota[level] += vcell.cell_number
                pool.unbound[level] += vcell.cell_number
                pool.quota_leaves += vcell.cell_number * chain.size[level]
                pool.max_unit = max(pool.max_unit, chain.unit_size(level))
                chain.demand[level] += vcell.cell_number
            for pid in spec.pinned_cells:
                self._pin_owner[pid] = name
        for pid, cell in self.topo.pinned.items():
            owner = self._vcs.get(self._pin_owner.get(pid, ""))
            pool = Pool(owner, cell.chain, pid)
            pool.quota_leaves = cell.nleaves
            pool.max_unit = cell.chain.unit_size(cell.level)
            if owner is not None:
                owner.pinned[pid] = pool
            cell.chain.carve(cell)
            self._bind(pool, cell, pinned=True)
        for chain in self._chains.values():
            short = chain.short_level()
            if short:
                raise ValueError(
                    f"virtualClusters: VC safety broken in chain {chain.name} at level {chain.types[short]}: "
                    "the VCs' cells do not fit onto the physical cells"
                )
        self._vc_list = [self._vcs[n] for n in sorted(self._vcs)]
        self._nfree_nodes = 0
        for node in self._nodes.values():
            self._refile_node(node)
            if node.cell.free == node.cell.nleaves:
                self._nfree_nodes += 1
        # The most leaves an opportunistic task can get on one node of each chain (pinned leaves excluded).
        self._opp_node_cap = {
            ch.name: max((n.cell.nleaves - n.npinned for n in ch.nodes), default=0)
            for ch in self._chains.values()
        }
        for chain in self._chains.values():
            chain.idle = sum(n.idle for n in chain.nodes if n.healthy)

    # ================================================================== Scheduler interface
    def schedule(self, queue: Sequence[GangRequest]) -> Decision:
        decision = Decision()
        self._sync(queue)
        self._commit_reservations(decision)
        if self._opp_version != self._borrow_seen:
            self._borrow_failed.clear()
            self._borrow_seen = self._opp_version
            self._borrow_full = True
        for vc in self._vc_list:
            self._pass_vc(vc, decision)
        if self.borrow:
            self._pass_borrow(decision)
        self._pass_opp(decision)
        self._placed_now.clear()
        return decision

    def release(self, key: str) -> None:
        r = self._reservations.get(key)
        if r is not None:
            self._cancel(r)
        held = self._held.pop(key, None)
        if held is not None:
            touched: dict[int, Cell] = {}
            chains: set[Chain] = set()
            for _t, node, leaves in held.tasks:
                for leaf in leaves:
                    if leaf.user == key:
                        self._set(leaf, None, -2, leaf.reserved)
                    if leaf.bound is not None:
                        touched[leaf.bound.idx] = leaf.bound
                self._refile_leaves(leaves)
                chains.add(node.chain)
            self._count_gang(held, -1)
            for cell in touched.values():
                self._maybe_unbind(cell)
            for chain in chains:
                if chain.bad_nodes or chain.doomed:
                    self._fix_doom(chain)
        if key in self._dying:
            self._forget_dying(key)
        w = self._waiters.get(key)
        if w is not None and w.error is not None and w.fail == ("stale",):
            self._drop(key)  # re-read as a new gang by the next schedule()

    def restore(self, placement: GangPlacement, request: GangRequest | None = None) -> None:
        self.restore_all([(placement, request)])

    def restore_all(self, items: Sequence[tuple[GangPlacement, GangRequest | None]]) -> None:
        """Re-take recorded placements, deciding over all of them which cells each VC binds.

        Gangs recorded as borrowers (and opportunistic ones) come back preemptible. For the others,
        each VC binds its unbound virtual cells top level first, each around the most of its gangs'
        leaves (never around another VC's), so the cells come back as they were bound whatever the
        order of the store; free cells doomed to VCs because of bad nodes are released first and
        doomed again after. A gang some of whose leaves end up outside its VC's cells (the VC lost
        quota, or another VC's cell holds them) is kept running as a borrower (HiveD's downgrade).
        """
        gangs: list[tuple[GangPlacement, VcState | None, int, list[Pick]]] = []
        taken: set[int] = set()
        for placement, request in items:
            key = placement.key
            if key in self._held:
                continue
            if key in self._reservations:
                self._cancel(self._reservations[key])
            vc = self._vcs.get(request.virtual_cluster) if request is not None else None
            prio = request.priority if request is not None and vc is not None else -1
            prio = prio if prio >= 0 and not placement.borrowed else -1
            sizes = {(t.role, t.index): t for t in request.tasks} if request is not None else {}
            picks: list[Pick] = []
            for (role, index), tp in placement.tasks.items():
                t = sizes.get((role, index)) or TaskRequest(role, index, 0, 0, len(tp.gpus))
                leaves = [lf for lf in self._resolve(tp, t, request) if lf.idx not in taken]
                taken.update(lf.idx for lf in leaves)
                if leaves:
                    picks.append((t, leaves[0].node, leaves))
            if picks:
                gangs.append((placement, vc, prio, picks))
        chains = {id(n.chain): n.chain for _p, _v, _pr, picks in gangs for _t, n, _l in picks}.values()
        for chain in chains:  # undoom unused cells: the gangs' own VCs come first
            for cell in list(chain.doomed.values()):
                if cell.vc_use == 0:
                    self._undoom(cell)
                    self._unbind(cell, bump=False)
        bound = self._bind_around([(vc, picks) for _p, vc, prio, picks in gangs if prio >= 0 and vc])
        for placement, vc, prio, picks in gangs:
            borrowed = placement.borrowed and vc is not None
            if prio >= 0 and vc is not None and not all(
                self._in_quota(vc, lf) for _t, _n, leaves in picks for lf in leaves
            ):
                prio, borrowed = -1, True
            for _t, _n, leaves in picks:
                for leaf in leaves:
                    self._set(leaf, placement.key, prio, None)
                self._refile_leaves(leaves)
            key, attempt = placement.key, placement.attempt
            held = Held(key, attempt, vc, prio, picks, self._placement(key, attempt, picks, borrowed), borrowed)
            self._held[key] = held
            self._count_gang(held, +1)
        for cell in bound:  # bound around gangs that came back as borrowers after all
            self._maybe_unbind(cell)
        for chain in chains:
            if chain.bad_nodes or chain.doomed:
                self._fix_doom(chain)

    def _in_quota(self, vc: VcState, leaf: Cell) -> bool:
        if leaf.pinned is not None:
            pool = vc.pinned.get(leaf.pinned)
            return pool is not None and leaf.pool is pool
        return leaf.pool is not None and leaf.pool is vc.pools.get(leaf.chain.name)

    def _bind_around(self, gangs: list[tuple[VcState, list[Pick]]]) -> list[Cell]:
        """For restore: bind VCs' unbound virtual cells around the leaves of their gangs (see
        `restore_all`); a bind is kept only if VC safety still holds. Returns the cells bound."""
        wanted: dict[int, dict[int, Cell]] = {}  # pool id -> leaf idx -> leaf not yet in the pool's cells
        pools: dict[int, Pool] = {}
        owner: dict[int, int] = {}  # leaf idx -> pool id
        for vc, picks in gangs:
            for _t, _n, leaves in picks:
                for lf in leaves:
                    pool = vc.pools.get(lf.chain.name)
                    if lf.pinned is None and lf.pool is None and pool is not None:
                        pools[id(pool)] = pool
                        wanted.setdefault(id(pool), {})[lf.idx] = lf
                        owner[lf.idx] = id(pool)
        bound: list[Cell] = []
        for pid, need in sorted(wanted.items(), key=lambda kv: pools[kv[0]].vc.name):
            pool = pools[pid]
            chain = pool.chain
            for lv in range(chain.top, 0, -1):
                while pool.unbound[lv] and need:
                    around: dict[int, list[Cell]] = {}
                    for lf in need.values():
                        around.setdefault(lf.apath[lv - 1].idx, []).append(lf)
                    for idx in sorted(around, key=lambda i: -len(around[i])):
                        cell = self._cells[idx]
                        if cell.pinned is not None or chain.free_container(cell) is None:
                            continue
                        if any(owner.get(lf.idx, pid) != pid for lf in cell.leaves):
                            continue  # another VC's gang runs inside: the cell cannot have been ours
                        chain.carve(cell)
                        self._bind(pool, cell)
                        if chain.short_level([len(d) for d in chain.free], chain.demand):
                            self._unbind(cell, bump=False)
                            continue
                        bound.append(cell)
                        for lf in around[idx]:
                            del need[lf.idx]
                        break
                    else:
                        break  # no cell of this level can be bound around the leaves left
        return bound

    def why_waiting(self, key: str) -> WaitInfo | None:
        w = self._waiters.get(key)
        if w is None:
            return None
        order = w.vc.order if w.vc is not None else self._orphans
        position = bisect.bisect_left(order, w.okey) + 1
        return WaitInfo(self._reason(w), position)

    def check(self, request: GangRequest) -> None:
        vc, prio, tasks, error = self._parse(request)
        if error is not None:
            raise SchedulerError(error)
        problem = self._idle_fit(vc, prio, tasks)
        if problem is not None:
            raise SchedulerError(problem)

    # ================================================================== extra API
    def set_node_health(self, node: str, healthy: bool) -> None:
        """Mark a node healthy or bad (HiveD §1.9). Running gangs keep their cells; waiting ones avoid it.

        Raises KeyError for a node the layout does not have.
        """
        nd = self._nodes.get(node)
        if nd is None:
            raise KeyError(f"unknown node {node!r}")
        if nd.healthy == healthy:
            return
        chain = nd.chain
        d = 1 if healthy else -1
        for leaf in nd.leaves:
            if leaf.pool is not None and leaf.user is None and leaf.reserved is None:
                leaf.pool.free += d
        if nd.cell.free == nd.cell.nleaves:
            self._nfree_nodes += d
        chain.idle += d * nd.idle
        nd.healthy = healthy
        chain.bad_nodes -= d
        for c in nd.subcells:
            c.nbad -= d
            if c.in_free:
                chain.fl_refresh(c)
        c: Cell | None = nd.cell
        while c is not None:
            c.nbad -= d
            if c.in_free:
                chain.fl_refresh(c)
            c = c.parent
        self._refile_leaves(nd.leaves)
        for vc in self._vc_list:
            vc.version += 1
        self._opp_version += 1
        if not healthy:
            for r in list(self._reservations.values()):
                if any(n is nd for _t, n, _l in r.picks):
                    self._cancel(r)
        self._fix_doom(chain)

    def node_health(self, node: str) -> bool:
        return self._nodes[node].healthy

    def vc_status(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per VC, per leaf type: `guaranteed` (quota + pinned leaves), `used` (by its guaranteed
        gangs), `reserved` (held for its waiting gangs and not used by its guaranteed gangs),
        `unhealthy` (its bound leaves on bad nodes, not used), `free` (= guaranteed - used - reserved -
        unhealthy: what a new guaranteed gang could get, preempting opportunistic gangs if needed),
        `opportunistic_used` (leaves its opportunistic gangs use anywhere), `doomed` (leaves of cells
        bound to it because healthy hardware ran short), `jobs` (its running guaranteed gangs inside
        its quota), `borrowed` / `borrowed_jobs` (leaves and gangs of its guaranteed jobs running as
        borrowers on idle cells outside its quota: preemptible like opportunistic jobs)."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for vc in self._vc_list:
            per: dict[str, dict[str, int]] = {}
            for pool in vc.all_pools():
                lt = pool.chain.leaf_type
                d = per.setdefault(lt, _empty_status())
                unhealthy = sum(
                    sum(
                        1
                        for lf in u.leaves
                        if lf.reserved is None and not (lf.user is not None and lf.prio >= 0)
                    )
                    for u in pool.units_all.values()
                    if not u.node.healthy
                )
                d["guaranteed"] += pool.quota_leaves
                d["used"] += pool.used
                d["reserved"] += pool.reserved
                d["unhealthy"] += unhealthy
                d["doomed"] += sum(c.nleaves for c in pool.bound.values() if c.doomed)
            for lt, n in vc.jobs.items():
                per.setdefault(lt, _empty_status())["jobs"] += n
            for lt, n in vc.opp_used.items():
                per.setdefault(lt, _empty_status())["opportunistic_used"] += n
            for lt, n in vc.borrowed.items():
                per.setdefault(lt, _empty_status())["borrowed"] += n
            for lt, n in vc.borrow_jobs.items():
                per.setdefault(lt, _empty_status())["borrowed_jobs"] += n
            for d in per.values():
                d["free"] = max(0, d["guaranteed"] - d["used"] - d["reserved"] - d["unhealthy"])
            out[vc.name] = per
        return out

    def node_status(self) -> dict[str, dict]:
        """Per node: chain, leaf type, health, leaf counts (free / used / opportunistic / reserved),
        the VCs its leaves are bound to (leaf counts), its pinned cell id and the gangs on it."""
        out: dict[str, dict] = {}
        for name, nd in self._nodes.items():
            vcs: dict[str, int] = {}
            gangs: set[str] = set()
            used = opp = reserved = 0
            for lf in nd.leaves:
                if lf.pool is not None and lf.pool.vc is not None:
                    vcs[lf.pool.vc.name] = vcs.get(lf.pool.vc.name, 0) + 1
                if lf.user is not None:
                    used += 1
                    opp += lf.prio < 0
                    gangs.add(lf.user)
                if lf.reserved is not None:
                    reserved += 1
            out[name] = {
                "chain": nd.chain.name,
                "leafType": nd.chain.leaf_type,
                "hostIp": nd.host_ip,
                "healthy": nd.healthy,
                "leaves": len(nd.leaves),
                "free": nd.cell.free,
                "used": used,
                "opportunistic": opp,
                "reserved": reserved,
                "vcs": vcs,
                "pinned": sorted({lf.pinned for lf in nd.leaves if lf.pinned}) or None,
                "gangs": sorted(gangs),
            }
        return out

    def free_nodes(self) -> int:
        """Healthy nodes with no leaf cell used or reserved (the fragmentation metric)."""
        return self._nfree_nodes

    def placement_of(self, key: str) -> GangPlacement | None:
        held = self._held.get(key)
        return held.placement if held is not None else None

    # ================================================================== request parsing
    def _parse(self, req: GangRequest) -> tuple[VcState | None, int, list[TaskDemand], str | None]:
        prio = req.priority if req.priority >= 0 else -1
        vc = self._vcs.get(req.virtual_cluster)
        if vc is None:
            known = ", ".join(sorted(self._vcs)) or "none"
            return (
                None,
                prio,
                [],
                f"defaults.virtualCluster: unknown virtual cluster '{req.virtual_cluster}' (known: {known})",
            )
        guaranteed = prio >= 0
        tasks: list[TaskDemand] = []
        for t in req.tasks:
            spec = role_spec(req.hived, t.role)
            base = f"extras.hivedScheduler.taskRoles.{t.role}"
            sku_type = spec.get("skuType") or None
            sku_num = spec.get("skuNum")
            if sku_num is not None and (
                isinstance(sku_num, bool) or not isinstance(sku_num, int) or sku_num < 1
            ):
                return vc, prio, [], f"{base}.skuNum: must be an integer >= 1, not {sku_num!r}"
            pin = spec.get("pinnedCellId") or None
            if pin is not None:
                td, err = self._parse_pinned(vc, guaranteed, t, base, str(pin), sku_type, sku_num)
            else:
                td, err = self._parse_chains(vc, guaranteed, t, base, sku_type, sku_num)
            if err is not None:
                return vc, prio, [], err
            tasks.append(td)
        tasks.sort(key=lambda d: (-d.kmax, d.task.role, d.task.index))
        return vc, prio, tasks, None

    def _parse_pinned(
        self, vc: VcState, guaranteed: bool, t: TaskRequest, base: str, pin: str, sku_type, sku_num
    ) -> tuple[TaskDemand | None, str | None]:
        if not guaranteed:
            return None, f"{base}.pinnedCellId: opportunistic jobs (priority -1) cannot use pinned cells"
        cell = self.topo.pinned.get(pin)
        if cell is None:
            known = ", ".join(sorted(vc.pinned)) or "none"
            return (
                None,
                f"{base}.pinnedCellId: unknown pinned cell '{pin}' (virtual cluster {vc.name} has: {known})",
            )
        pool = vc.pinned.get(pin)
        if pool is None:
            owner = self._pin_owner.get(pin)
            whose = f"the virtual cluster '{owner}'" if owner else "no virtual cluster"
            return None, f"{base}.pinnedCellId: pinned cell '{pin}' belongs to {whose}, not to '{vc.name}'"
        chain = pool.chain
        if sku_type is not None and sku_type != chain.leaf_type:
            return None, f"{base}.skuType: pinned cell '{pin}' holds {chain.leaf_type}, not {sku_type}"
        k = leaves_for(t, chain.sku, sku_num)
        if k is None:
            return (
                None,
                f"taskRoles.{t.role}.resourcePerInstance: gpu {t.gpu} asked, but pinned cell '{pin}' has no GPUs",
            )
        if k > pool.max_unit:
            return None, (
                f"taskRoles.{t.role}.resourcePerInstance: a task needs {k} {chain.leaf_type} on one node, "
                f"but pinned cell '{pin}' offers at most {pool.max_unit} on one node"
            )
        return TaskDemand(t, [(pool, k)], k), None

    def _parse_chains(
        self, vc: VcState, guaranteed: bool, t: TaskRequest, base: str, sku_type, sku_num
    ) -> tuple[TaskDemand | None, str | None]:
        if sku_type is not None:
            chains = self._chains_by_leaf.get(sku_type)
            if chains is None:
                known = ", ".join(sorted(self._chains_by_leaf))
                return None, f"{base}.skuType: unknown SKU '{sku_type}' (known: {known})"
        elif t.gpu > 0:
            chains = [c for c in self._chains.values() if c.sku.gpu > 0]
        else:  # CPU-only tasks prefer CPU-only chains, then GPU chains (a GPU leaf carries CPUs too)
            chains = sorted(self._chains.values(), key=lambda c: c.sku.gpu > 0)
        if not any(leaves_for(t, c.sku, sku_num) is not None for c in chains):
            have = ", ".join(sorted(c.leaf_type for c in chains) or sorted(self._chains_by_leaf))
            return None, (
                f"taskRoles.{t.role}.resourcePerInstance: gpu {t.gpu} asked, but the "
                f"{sku_type or 'cluster'} cells have no GPUs (leaf types: {have})"
            )
        options: list[tuple[object, int]] = []
        too_big: list[tuple[Chain, int, int]] = []
        owned = False
        for chain in chains:
            k = leaves_for(t, chain.sku, sku_num)
            if k is None:
                continue
            if guaranteed:
                pool = vc.pools.get(chain.name)
                if pool is None or pool.quota_leaves == 0:
                    continue
                owned = True
                if k > pool.max_unit:
                    too_big.append((chain, k, pool.max_unit))
                    continue
                options.append((pool, k))
            else:
                cap = self._opp_node_cap[chain.name]
                if k > cap:
                    too_big.append((chain, k, cap))
                    continue
                options.append((chain, k))
        if options:
            return TaskDemand(t, options, max(k for _o, k in options)), None
        what = sku_type or ("GPU" if t.gpu > 0 else "any")
        if too_big:
            chain, k, cap = too_big[0]
            where = (
                f"the cells of virtual cluster '{vc.name}' hold at most {cap} {chain.leaf_type} on one node"
                if guaranteed and cap < chain.node_size
                else f"the largest node has {cap} {chain.leaf_type}"
            )
            field = f"{base}.skuNum" if sku_num is not None else f"taskRoles.{t.role}.resourcePerInstance"
            return None, (
                f"{field}: a task needs {k} {chain.leaf_type} cells (cpu {t.cpu}, memoryMB {t.memory_mb}, "
                f"gpu {t.gpu}) on one node, but {where}"
            )
        if guaranteed and not owned:
            has = sorted({p.chain.leaf_type for p in vc.pools.values() if p.quota_leaves})
            field = f"{base}.skuType" if sku_type else "defaults.virtualCluster"
            return None, (
                f"{field}: virtual cluster '{vc.name}' has no {what} cells "
                f"(it has: {', '.join(has) or 'only pinned cells'})"
            )
        return (
            None,
            f"taskRoles.{t.role}.resourcePerInstance: gpu {t.gpu} asked, but no {what} cells have GPUs",
        )

    def _idle_fit(self, vc: VcState | None, prio: int, tasks: list[TaskDemand]) -> str | None:
        """Whether the gang fits the VC's quota (guaranteed) or the cluster (opportunistic) when idle."""
        caps: dict[object, dict[int, int]] = {}

        def capacity(opt: object) -> dict[int, int]:
            cap = caps.get(id(opt))
            if cap is None:
                static = self._capacity_cache.get(id(opt))
                if static is None:
                    static = self._capacity_cache[id(opt)] = self._idle_capacity(opt)
                cap = caps[id(opt)] = dict(static)
            return cap

        for td in tasks:
            placed = False
            for opt, k in td.options:
                cap = capacity(opt)
                fits = [s for s, n in cap.items() if n > 0 and s >= k]
                if fits:
                    s = min(fits)
                    cap[s] -= 1
                    if s > k:
                        cap[s - k] = cap.get(s - k, 0) + 1
                    placed = True
                    break
            if not placed:
                opt, _k = td.options[0]
                need = sum(d.options[0][1] for d in tasks if d.options[0][0] is opt)
                sizes = sorted((d.options[0][1] for d in tasks if d.options[0][0] is opt), reverse=True)
                if isinstance(opt, Pool):
                    leaf = opt.chain.leaf_type
                    owner = (
                        f"pinned cell '{opt.pinned}'" if opt.pinned else f"virtual cluster '{opt.vc.name}'"
                    )
                    total = opt.quota_leaves
                else:
                    leaf = opt.leaf_type
                    owner = "the cluster"
                    total = sum(len(n.leaves) - n.npinned for n in opt.nodes)
                if need > total:
                    return (
                        f"taskRoles: the gang needs {need} {leaf} cells at once ({_plural(len(sizes), 'task')}), "
                        f"more than {owner} has ({total} {leaf})"
                    )
                return (
                    f"taskRoles: the gang's tasks ({', '.join(map(str, sizes))} {leaf} each) cannot be packed "
                    f"into the cells of {owner} even when it is idle"
                )
        return None

    def _idle_capacity(self, opt: object) -> dict[int, int]:
        cap: dict[int, int] = {}
        if isinstance(opt, Pool):
            chain = opt.chain
            if opt.pinned:
                cell = next(iter(opt.bound.values()))
                units = (
                    [len(n.leaves) for n in cell.nodes] if cell.level >= chain.node_level else [cell.nleaves]
                )
                for s in units:
                    cap[s] = cap.get(s, 0) + 1
                return cap
            for lv, n in enumerate(opt.quota):
                if n <= 0:
                    continue
                if lv >= chain.node_level:
                    cap[chain.node_size] = cap.get(chain.node_size, 0) + n * (
                        chain.size[lv] // chain.node_size
                    )
                else:
                    cap[chain.size[lv]] = cap.get(chain.size[lv], 0) + n
            return cap
        assert isinstance(opt, Chain)
        for nd in opt.nodes:
            s = len(nd.leaves) - nd.npinned
            if s > 0:
                cap[s] = cap.get(s, 0) + 1
        return cap

    # ================================================================== queue bookkeeping
    def _sync(self, queue: Sequence[GangRequest]) -> None:
        """Add new gangs, drop gangs no longer queued (cancelling their reservations)."""
        qmap = {r.key: r for r in queue}
        waiters = self._waiters
        gone = waiters.keys() - qmap.keys()
        for key in gone:
            self._drop(key)
        new = qmap.keys() - waiters.keys()
        if not new:
            return
        for key in sorted(new):
            r = qmap[key]
            held = self._held.get(key)
            if held is not None and held.attempt == r.attempt:
                continue  # placed already; the caller has not taken it off its queue yet
            self._add_waiter(r, stale=held is not None)

    def _add_waiter(self, r: GangRequest, stale: bool = False) -> Waiter:
        vc, prio, tasks, error = self._parse(r)
        okey = (-prio, r.submit_time, r.key)
        shape = (prio, tuple(tuple((_opt_key(o), k) for o, k in td.options) for td in tasks))
        w = Waiter(r.key, r.attempt, r, vc, prio, okey, tasks, shape, error)
        if prio >= 0 and error is None and tasks:
            w.bkey = self._bkey_of_shape(shape)
        if stale and error is None:
            w.error = "the previous attempt of this job still holds its cells"
            w.fail = ("stale",)
        self._waiters[r.key] = w
        if vc is None:
            bisect.insort(self._orphans, okey)
            return w
        bisect.insort(vc.order, okey)
        if prio >= 0:
            bisect.insort(vc.gorder, okey)
            vc.fresh.append(w)
            if w.error is None:
                vc.shapes[shape] = vc.shapes.get(shape, 0) + 1
        else:
            bisect.insort(self._opp_order, okey)
            self._opp_fresh.append(w)
            if w.error is None:
                self._opp_shapes[shape] = self._opp_shapes.get(shape, 0) + 1
        return w

    def _drop(self, key: str) -> None:
        w = self._waiters.get(key)
        if w is None:
            return
        if w.reservation is not None:
            self._cancel(w.reservation)
        self._remove_waiter(w)

    def _remove_waiter(self, w: Waiter) -> None:
        """Forget a waiting gang (placed or gone). Its reservation must be gone or committed."""
        del self._waiters[w.key]
        self._lower_pending.pop(w.key, None)
        eligible = w.error is None and w.reservation is None
        if w.vc is None:
            _remove_sorted(self._orphans, w.okey)
            return
        _remove_sorted(w.vc.order, w.okey)
        if w.prio >= 0:
            _remove_sorted(w.vc.gorder, w.okey)
            if eligible:
                _dec(w.vc.shapes, w.shape)
        else:
            _remove_sorted(self._opp_order, w.okey)
            if eligible:
                _dec(self._opp_shapes, w.shape)

    # ================================================================== passes
    def _pass_vc(self, vc: VcState, decision: Decision) -> None:
        full = vc.version != vc.seen_version
        if not full and not vc.fresh:
            return
        waiters = self._waiters
        candidates = self._candidates(full, vc.gorder, vc.fresh)
        if full:
            vc.failed.clear()
            vc.seen_version = vc.version
            old_head = None
        else:
            old_head = self._first_eligible(vc, exclude={id(w) for w in candidates})
        vc.fresh = []
        self._scan_memo.clear()
        head: Waiter | None = None
        timeout_ms = None if self.reservation_timeout is None else self.reservation_timeout * 1000.0
        for w in candidates:
            if w.reservation is not None or w.error is not None or waiters.get(w.key) is not w:
                continue
            h = head
            if old_head is not None and old_head.okey < w.okey and (h is None or old_head.okey < h.okey):
                h = old_head
            rec = vc.failed.get(w.shape)
            if rec is not None:
                if rec[0] == "defer":  # same shape deferred its intra-VC preemption: so does this one
                    rec = rec[1]
                    self._lower_pending[w.key] = w
                w.fail = rec
                if head is None:
                    head = w
                self._borrow_fresh.append(w)
                continue
            if (
                timeout_ms is not None
                and h is not None
                and vc.hold is None
                and h.reservation is None
                and waiters.get(h.key) is h
                and w.req.submit_time - h.req.submit_time > timeout_ms
            ):
                self._make_hold(h, decision)
            if self._try_guaranteed(w, decision, defer_lower=self.borrow):
                continue
            self._borrow_fresh.append(w)
            if w.key in self._lower_pending:  # not a failure yet: it borrows, or preempts in the borrow pass
                vc.failed[w.shape] = ("defer", w.fail)
            else:
                vc.failed[w.shape] = w.fail
            if head is None:
                head = w
            if all(s in vc.failed for s in vc.shapes):
                # the rest of the VC's gangs were not visited: the borrow pass must look at all of them
                self._borrow_full = True
                break

    def _candidates(self, full: bool, order: list[tuple], fresh: list[Waiter]) -> list[Waiter]:
        """The gangs a pass visits: all waiting ones in `order` once cells got freer (`full`), else
        only those added since the last pass (the others' failures still hold)."""
        waiters = self._waiters
        if full:
            return [waiters[ok[2]] for ok in order]
        return sorted((w for w in fresh if waiters.get(w.key) is w), key=lambda w: w.okey)

    def _first_eligible(self, vc: VcState, exclude: set[int]) -> Waiter | None:
        for ok in vc.gorder:
            w = self._waiters[ok[2]]
            if w.reservation is None and w.error is None and id(w) not in exclude:
                return w
        return None

    def _pass_opp(self, decision: Decision) -> None:
        full = self._opp_version != self._opp_seen
        if not full and not self._opp_fresh:
            return
        waiters = self._waiters
        candidates = self._candidates(full, self._opp_order, self._opp_fresh)
        if full:
            self._opp_failed.clear()
            self._opp_seen = self._opp_version
        self._opp_fresh = []
        failed = self._opp_failed
        for w in candidates:
            if w.error is not None or waiters.get(w.key) is not w:
                continue
            rec = failed.get(w.shape)
            if rec is not None:
                w.fail = rec
                continue
            if self._try_opp(w, decision):
                continue
            failed[w.shape] = w.fail
            if all(s in failed for s in self._opp_shapes):
                break

    def _pass_borrow(self, decision: Decision) -> None:
        """Guaranteed gangs that cannot start in their VC's quota borrow idle cells anywhere (the same
        idle-cell placement as opportunistic gangs, leaves marked priority -1 so any VC's guaranteed
        gang reclaims them); oldest and highest priority first across VCs. A gang whose intra-VC
        preemption was deferred (`_lower_pending`) tries it here when borrowing fails."""
        waiters = self._waiters
        failed = self._borrow_failed
        bkeys = {self._bkey_of_shape(sh) for vc in self._vc_list for sh in vc.shapes}
        bkeys.discard(None)
        for bk in bkeys:
            if bk not in failed:
                short = self._idle_short(bk)
                if short is not None:
                    failed[bk] = short
        if not self._lower_pending and all(k in failed for k in bkeys):
            self._borrow_full = False
            self._borrow_fresh = []
            return
        if self._borrow_full:
            # a snapshot: commits below remove from the vc.gorder lists being merged
            candidates: Iterable[Waiter] = [
                waiters[ok[2]] for ok in heapq.merge(*(vc.gorder for vc in self._vc_list))
            ]
        else:
            pool = {id(w): w for w in self._borrow_fresh}
            for w in self._lower_pending.values():
                pool[id(w)] = w
            candidates = sorted(pool.values(), key=lambda w: w.okey)
        self._borrow_full = False
        self._borrow_fresh = []
        for w in candidates:
            if w.reservation is not None or w.error is not None or waiters.get(w.key) is not w:
                continue
            bk = w.bkey
            tried = False
            if bk is not None and bk not in failed:
                if self._try_borrow(w, decision):
                    continue
                failed[bk] = w.bfail
                tried = True
            if self._lower_pending.pop(w.key, None) is not None:
                tried = True
                vc = w.vc
                assert vc is not None
                rec = vc.failed.get(w.shape)
                if rec is None or rec[0] == "defer":
                    if self._try_guaranteed(w, decision, only_lower=True):
                        continue
                    vc.failed[w.shape] = w.fail
            if tried and not self._lower_pending and all(k in failed for k in bkeys):
                break

    def _bkey_of_shape(self, shape: tuple) -> tuple | None:
        """Waiter.bkey from a guaranteed gang's shape: per task its (chain, leaf cells) options that
        an idle node could hold; None when a task names a pinned cell or fits no node."""
        bk = self._bkey_cache.get(shape, False)
        if bk is not False:
            return bk
        key: list[tuple] = []
        for opts in shape[1]:
            if any(name.startswith("pin:") for name, _k in opts):
                key = []
                break
            ok = tuple((name, k) for name, k in opts if k <= self._opp_node_cap[name])
            if not ok:
                key = []
                break
            key.append(ok)
        bk = tuple(key) if key else None
        self._bkey_cache[shape] = bk
        return bk

    def _may_borrow(self, w: Waiter) -> bool:
        """Whether borrowing could place `w` now (cached failures, enough idle leaves in the cluster)."""
        bk = w.bkey
        return bk is not None and bk not in self._borrow_failed and self._idle_short(bk) is None

    def _idle_short(self, bk: tuple) -> tuple | None:
        """A failure record when the cluster has fewer idle leaves than borrowing `bk` needs, else None."""
        need: dict[str, int] = {}
        for opts in bk:
            if len(opts) == 1:
                name, k = opts[0]
                need[name] = need.get(name, 0) + k
        for name, n in need.items():
            chain = self._chains[name]
            if n > chain.idle:
                return ("opp-total", chain, n)
        return None

    # ================================================================== one gang
    def _try_guaranteed(
        self, w: Waiter, decision: Decision, *, defer_lower: bool = False, only_lower: bool = False
    ) -> bool:
        """Place or reserve for `w`; False (with w.fail set) when it must wait.

        `defer_lower`: when preempting lower-priority gangs of its VC would be needed and the gang
        might borrow idle cells instead, leave that to the borrow pass (`_lower_pending`);
        `only_lower`: that deferred attempt (intra-VC preemption only)."""
        t0 = self._clock()
        vc = w.vc
        assert vc is not None
        modes = [PREEMPT_LOWER] if only_lower else [FREE, PREEMPT_OPP, PREEMPT_LOWER]
        lower = sum(n for p, n in vc.prio_leaves.items() if p < w.prio)
        need: dict[Pool, int] = {}
        kmax: dict[Pool, int] = {}
        single = True
        for td in w.tasks:
            if len(td.options) != 1:
                single = False
                break
            pool, k = td.options[0]
            need[pool] = need.get(pool, 0) + k
            kmax[pool] = max(kmax.get(pool, 0), k)
        if single:
            useful_opp = False
            for pool, n in need.items():
                unbound = pool.unbound_leaves()
                b0 = pool.free + unbound
                b1 = b0 + pool.opp + pool.dying
                if n > b1 + lower:
                    w.fail = ("quota", pool, n)
                    return False
                if n > b0 or kmax[pool] > max(pool.units.largest(), pool.largest_unbound_unit()):
                    modes = [m for m in modes if m != FREE]
                if n > b1:
                    modes = [m for m in modes if m != PREEMPT_OPP]
                if pool.opp or pool.dying or unbound:
                    useful_opp = True
            if not useful_opp and not self._dying:
                modes = [m for m in modes if m != PREEMPT_OPP]
        if not lower and not self._dying:
            modes = [m for m in modes if m != PREEMPT_LOWER]
        if defer_lower and PREEMPT_LOWER in modes and self._may_borrow(w):
            modes = [m for m in modes if m != PREEMPT_LOWER]
            self._lower_pending[w.key] = w
        for mode in modes:
            picks = self._plan(w, mode)
            if picks is None:
                continue
            if mode == FREE:
                self._commit(w, picks, decision, t0)
                return True
            self._reserve_or_place(w, picks, "preempt", decision, t0)
            return True
        w.fail = self._failure(w, lower)
        return False

    def _try_opp(self, w: Waiter, decision: Decision) -> bool:
        t0 = self._clock()
        if all(len(td.options) == 1 for td in w.tasks):
            need: dict[Chain, int] = {}
            for td in w.tasks:
                chain, k = td.options[0]
                need[chain] = need.get(chain, 0) + k
            for chain, n in need.items():
                if n > chain.idle:
                    w.fail = ("opp-total", chain, n)
                    return False
        picks = self._plan(w, FREE)
        if picks is None:
            td = w.tasks[0]
            chain, k = td.options[0]
            w.fail = ("opp-frag", chain, k, sum(1 for d in w.tasks if d.options[0][1] >= k))
            return False
        self._commit(w, picks, decision, t0)
        return True

    def _try_borrow(self, w: Waiter, decision: Decision) -> bool:
        """Place guaranteed `w` as a borrower on idle cells outside its quota (never preempting)."""
        t0 = self._clock()
        bk = w.bkey
        assert bk is not None
        short = self._idle_short(bk)
        if short is not None:
            w.bfail = short
            return False
        tasks = [
            TaskDemand(td.task, [(self._chains[name], k) for name, k in opts], td.kmax)
            for td, opts in zip(w.tasks, bk, strict=True)
        ]
        picks = self._plan(w, FREE, tasks, -1)
        if picks is None:
            name, k = bk[0][0]
            w.bfail = ("opp-frag", self._chains[name], k, sum(1 for opts in bk if opts[0][1] >= k))
            return False
        self._commit(w, picks, decision, t0, borrowed=True)
        return True

    def _plan(
        self, w: Waiter, mode: int, tasks: list[TaskDemand] | None = None, prio: int | None = None
    ) -> list[Pick] | None:
        """Take cells for every task of `w` (occupied in FREE mode, reserved otherwise), or undo all.
        `tasks`/`prio`: other options and leaf priority than the gang's own (borrowing)."""
        jl: list[tuple[Cell, str | None, int, str | None]] = []
        jb: list[Cell] = []
        picks: list[Pick] = []
        p = w.prio if prio is None else prio
        for td in w.tasks if tasks is None else tasks:
            got = None
            for opt, k in td.options:
                got = self._take(opt, k, mode, w, jl, jb, p)
                if got is not None:
                    break
            if got is None:
                self._undo(jl, jb)
                return None
            picks.append((td.task, got[0].node, got))
        return picks

    def _undo(self, jl: list, jb: list[Cell]) -> None:
        for leaf, user, prio, reserved in reversed(jl):
            self._set(leaf, user, prio, reserved, bump=False)
        self._refile_leaves([e[0] for e in jl])
        for cell in reversed(jb):
            self._unbind(cell, bump=False)

    def _take(
        self, opt: object, k: int, mode: int, w: Waiter, jl: list, jb: list[Cell], prio: int
    ) -> list[Cell] | None:
        if not isinstance(opt, Pool):  # opportunistic: the physical view of a chain
            chain = opt
            for cls in (0, 1):
                idx, _f = chain.opp_buckets[cls].pop_fit(k)
                if idx >= 0:
                    node = self._cells[idx].node
                    node.okey = -1
                    leaves = self._pick_opp(node, k)
                    self._grab(leaves, w, FREE, jl, prio)
                    return leaves
            return None
        pool = opt
        # (a) a unit of the VC with enough free leaves, fewest first
        idx, _f = pool.units.pop_fit(k)
        if idx < 0 and pool.pinned is None and self._bind_new(pool, k, False, jb) is not None:
            idx, _f = pool.units.pop_fit(k)  # (b) a newly bound clean cell
        if idx >= 0:
            unit = self._cells[idx]
            unit.ukey = -1
            leaves = self._pick(unit, k, FREE, w)
            self._grab(leaves, w, mode, jl, prio)
            return leaves
        if mode == FREE:
            return None
        # (c) a unit where preemption (or, for a hold, waiting) makes room; failures of a gang's first
        # task are remembered for the rest of the pass (room only shrinks during a pass)
        memo_key = (pool.key, mode, w.prio if mode == PREEMPT_LOWER else 0)
        first = not jl and not jb
        if k >= self._scan_memo.get(memo_key, k + 1):
            unit = None
        else:
            unit = self._scan_units(pool, k, mode, w)
            if unit is None and first:
                self._scan_memo[memo_key] = min(k, self._scan_memo.get(memo_key, k))
        if unit is None and pool.pinned is None:
            cell = self._bind_new(pool, k, True, jb)  # (d) a dirty free cell: preempt opportunistic gangs
            if cell is not None:
                units = [cell] if cell.level <= cell.chain.node_level else [n.cell for n in cell.nodes]
                unit = self._best_unit(units, k, mode, w)
        if unit is None:
            return None
        leaves = self._pick(unit, k, mode, w)
        self._grab(leaves, w, mode, jl, prio)
        return leaves

    def _grab(self, leaves: list[Cell], w: Waiter, mode: int, jl: list, prio: int) -> None:
        for leaf in leaves:
            jl.append((leaf, leaf.user, leaf.prio, leaf.reserved))
            if mode == FREE:
                self._set(leaf, w.key, prio, None)
            else:
                self._set(leaf, leaf.user, leaf.prio, w.key)
        self._refile_leaves(leaves)

    def _ok(self, mode: int, w: Waiter) -> Callable[[Cell], bool]:
        dying = self._dying
        fresh = self._placed_now
        if fresh and mode in (PREEMPT_OPP, PREEMPT_LOWER):
            inner = self._ok_base(mode, w, dying)
            return lambda lf: inner(lf) and lf.user not in fresh
        return self._ok_base(mode, w, dying)

    def _ok_base(self, mode: int, w: Waiter, dying: dict) -> Callable[[Cell], bool]:
        if mode == PREEMPT_OPP:
            return lambda lf: lf.reserved is None and (lf.user is None or lf.prio < 0 or lf.user in dying)
        if mode == PREEMPT_LOWER:
            p = w.prio
            return lambda lf: lf.reserved is None and (lf.user is None or lf.prio < p or lf.user in dying)
        if mode == HOLD:
            return lambda lf: lf.reserved is None
        return lambda lf: lf.user is None and lf.reserved is None

    def _best_unit(self, units: Iterable[Cell], k: int, mode: int, w: Waiter) -> Cell | None:
        """Among explicit `units` (a newly bound cell), the one where preemption/holding frees k leaves
        with the least disruption."""
        ok = self._ok(mode, w)
        best = None
        best_score: tuple = ()
        for u in units:
            if not u.node.healthy:
                continue
            avail = sum(1 for lf in u.leaves if ok(lf))
            if avail < k:
                continue
            score = (-u.free, -avail) if mode == HOLD else (max(0, k - u.free), avail)
            if best is None or score < best_score:
                best, best_score = u, score
        return best

    def _scan_units(self, pool: Pool, k: int, mode: int, w: Waiter) -> Cell | None:
        """The unit of `pool` with the most free leaves where preempting (or, for a hold, waiting for)
        the rest yields k usable leaves. Units are visited from the fullest-free bucket down and each
        is screened by counters (free, opportunistic, dying, guaranteed leaves per priority) before its
        leaves are counted, so the first feasible unit is found without scanning the whole VC."""
        ok = self._ok(mode, w)
        cells = self._cells
        index = None if mode == HOLD else self._preemption_index(pool, 0 if mode == PREEMPT_OPP else w.prio)
        if index is not None:  # units by upper bound of usable leaves: hopeless requests end here in O(1)
            for f in range(index.largest(), k - 1, -1):
                for idx in index.sets[f]:
                    u = cells[idx]
                    if sum(1 for lf in u.leaves if ok(lf)) >= k:
                        return u
            return None
        sets = pool.units.sets
        p = w.prio
        for f in range(pool.units.largest(), -1, -1):
            for idx in sets[f]:
                u = cells[idx]
                if mode == HOLD:
                    ub = u.nleaves - u.nres
                else:
                    ub = f + u.opp + u.ndying
                    if mode == PREEMPT_LOWER and u.gprio:
                        ub += sum(n for q, n in u.gprio.items() if q < p)
                if ub < k:
                    continue
                if sum(1 for lf in u.leaves if ok(lf)) >= k:
                    return u
        return None

    MAX_PREEMPTION_INDEXES = 8

    def _preemption_index(self, pool: Pool, p: int) -> Buckets | None:
        """The pool's units by preemptible upper bound for priority threshold p (built on first use)."""
        index = pool.pidx.get(p)
        if index is None:
            if len(pool.pidx) >= self.MAX_PREEMPTION_INDEXES:
                return None  # many distinct priorities: scan instead of maintaining more indexes
            index = pool.pidx[p] = Buckets(pool.chain.node_size)
            for u in pool.units_all.values():
                key = _preempt_key(u, p)
                u.pkeys[p] = key
                if key >= 0:
                    index.add(key, u.idx)
        return index

    def _pick(self, unit: Cell, k: int, mode: int, w: Waiter) -> list[Cell]:
        """k leaves of `unit` with the best affinity: descend while one child alone fits, choosing the
        child with the fewest usable leaves (packing inside the node); free leaves before others."""
        if mode == FREE:
            return _pack_free(unit, k)
        ok = self._ok(mode, w)
        cell = unit
        while cell.level > 1:
            best = None
            bscore: tuple = ()
            for ch in cell.children:
                a = sum(1 for lf in ch.leaves if ok(lf))
                if a < k:
                    continue
                score = (max(0, k - ch.free), a) if mode != HOLD else (-ch.free, a)
                if best is None or score < bscore:
                    best, bscore = ch, score
            if best is None:
                break
            cell = best
        cands = [lf for lf in cell.leaves if ok(lf)]
        cands.sort(key=lambda lf: lf.user is not None)
        return cands[:k]

    def _pick_opp(self, node: Node, k: int) -> list[Cell]:
        if node.nbound == 0 and node.npinned == 0:
            return _pack_free(node.cell, k)

        def usable(lf: Cell) -> bool:
            return lf.user is None and lf.reserved is None and lf.pinned is None

        cell = node.cell
        while cell.level > 1:
            best = None
            bscore: tuple = ()
            for ch in cell.children:
                a = sum(1 for lf in ch.leaves if usable(lf))
                if a < k:
                    continue
                score = (sum(1 for lf in ch.leaves if usable(lf) and lf.pool is not None), a)
                if best is None or score < bscore:
                    best, bscore = ch, score
            if best is None:
                break
            cell = best
        cands = [lf for lf in cell.leaves if usable(lf)]
        cands.sort(key=lambda lf: lf.pool is not None)
        return cands[:k]

    # ================================================================== outcomes
    def _commit(
        self, w: Waiter, picks: list[Pick], decision: Decision, t0: float | None, borrowed: bool = False
    ) -> None:
        placement = self._placement(w.key, w.attempt, picks, borrowed)
        held = Held(w.key, w.attempt, w.vc, -1 if borrowed else w.prio, picks, placement, borrowed)
        self._held[w.key] = held
        self._count_gang(held, +1)
        self._remove_waiter(w)
        self._placed_now.add(w.key)
        decision.placed.append(placement)
        if t0 is not None and self.decision_times is not None:
            self.decision_times.append(self._clock() - t0)

    def _reserve_or_place(
        self, w: Waiter, picks: list[Pick], kind: str, decision: Decision, t0: float
    ) -> None:
        """After a preempting (or hold) plan: place at once if nothing is in the way, else reserve."""
        victims: list[str] = []
        blocked = False
        seen: set[str] = set()
        for _t, _n, leaves in picks:
            for lf in leaves:
                u = lf.user
                if u is None:
                    continue
                blocked = True
                if u in seen or u in self._dying:
                    continue
                seen.add(u)
                if kind == "preempt" or lf.prio < 0:  # a hold waits for guaranteed gangs to finish
                    victims.append(u)
        if not blocked:
            for _t, _n, leaves in picks:
                for lf in leaves:
                    self._set(lf, w.key, w.prio, None)
                self._refile_leaves(leaves)
            self._commit(w, picks, decision, t0)
            return
        r = Reservation(w, kind, picks, set(victims), self._clock() - t0)
        self._reservations[w.key] = r
        if w.vc is not None:
            _dec(w.vc.shapes, w.shape)
            if kind == "hold":
                w.vc.hold = r
        w.reservation = r
        for v in victims:
            self._mark_dying(v, w.key)
            decision.preempt.append(v)
        for _t, _n, leaves in picks:
            for lf in leaves:
                if lf.user is not None and lf.user in self._dying:
                    self._dying[lf.user].add(w.key)

    def _make_hold(self, h: Waiter, decision: Decision) -> None:
        picks = self._plan(h, HOLD)
        if picks is not None:
            self._reserve_or_place(h, picks, "hold", decision, self._clock())

    def _commit_reservations(self, decision: Decision) -> None:
        for r in list(self._reservations.values()):
            w = r.waiter
            if self._waiters.get(w.key) is not w:
                self._cancel(r)
                continue
            if any(not n.healthy for _t, n, _l in r.picks):
                self._cancel(r)
                continue
            if all(lf.user is None for _t, _n, leaves in r.picks for lf in leaves):
                t0 = self._clock() - r.spent
                for _t, _n, leaves in r.picks:
                    for lf in leaves:
                        self._set(lf, w.key, w.prio, None)
                    self._refile_leaves(leaves)
                del self._reservations[w.key]
                if w.vc is not None and w.vc.hold is r:
                    w.vc.hold = None
                # still marked reserved while committing: its shape was uncounted when it was reserved
                self._commit(w, r.picks, decision, t0)
                w.reservation = None

    def _cancel(self, r: Reservation) -> None:
        w = r.waiter
        touched: dict[int, Cell] = {}
        for _t, _n, leaves in r.picks:
            for lf in leaves:
                if lf.reserved == w.key:
                    self._set(lf, lf.user, lf.prio, None)
                if lf.bound is not None:
                    touched[lf.bound.idx] = lf.bound
            self._refile_leaves(leaves)
        for cell in touched.values():
            self._maybe_unbind(cell)
        self._reservations.pop(w.key, None)
        w.reservation = None
        if w.vc is not None:
            if w.vc.hold is r:
                w.vc.hold = None
            if self._waiters.get(w.key) is w and w.error is None:
                w.vc.shapes[w.shape] = w.vc.shapes.get(w.shape, 0) + 1
                w.vc.fresh.append(w)
        for v in r.victims:
            pre = self._dying.get(v)
            if pre is not None:
                pre.discard(w.key)

    def _mark_dying(self, victim: str, preemptor: str) -> None:
        if victim in self._dying:
            self._dying[victim].add(preemptor)
            return
        self._dying[victim] = {preemptor}
        held = self._held.get(victim)
        if held is not None:
            for _t, _n, leaves in held.tasks:
                for lf in leaves:
                    if lf.pool is not None and lf.user == victim:
                        lf.pool.dying += 1
                        lf.unit.ndying += 1
                self._refile_leaves(leaves)

    def _forget_dying(self, key: str) -> None:
        self._dying.pop(key, None)

    def _placement(self, key: str, attempt: int, picks: list[Pick], borrowed: bool = False) -> GangPlacement:
        tasks = {}
        for t, node, leaves in picks:
            tasks[(t.role, t.index)] = TaskPlacement(
                node.name,
                node.host_ip,
                [lf.device for lf in leaves] if node.is_gpu else [],
                [lf.address for lf in leaves],
            )
        return GangPlacement(key, attempt, tasks, borrowed)

    def _count_gang(self, held: Held, d: int) -> None:
        vc = held.vc
        by_type: dict[str, int] = {}
        for _t, node, leaves in held.tasks:
            lt = node.chain.leaf_type
            by_type[lt] = by_type.get(lt, 0) + len(leaves)
        if vc is None:
            return
        n = sum(by_type.values())
        if held.prio >= 0:
            for pool in {
                id(lf.pool): lf.pool for _t, _n, leaves in held.tasks for lf in leaves if lf.pool
            }.values():
                pool.jobs += d
            vc.prio_leaves[held.prio] = vc.prio_leaves.get(held.prio, 0) + d * n
            if not vc.prio_leaves[held.prio]:
                del vc.prio_leaves[held.prio]
            for lt in by_type:
                vc.jobs[lt] = vc.jobs.get(lt, 0) + d
        elif held.borrowed:
            for lt, m in by_type.items():
                vc.borrowed[lt] = vc.borrowed.get(lt, 0) + d * m
                vc.borrow_jobs[lt] = vc.borrow_jobs.get(lt, 0) + d
        else:
            for lt, m in by_type.items():
                vc.opp_used[lt] = vc.opp_used.get(lt, 0) + d * m

    # ================================================================== wait reasons
    def _failure(self, w: Waiter, lower: int) -> tuple:
        td = w.tasks[0]
        pool, k = td.options[0]
        assert isinstance(pool, Pool)
        need = sum(d.options[0][1] for d in w.tasks if d.options[0][0] is pool)
        if need > pool.free + pool.unbound_leaves() + pool.opp + pool.dying + lower:
            return ("quota", pool, need)
        count = sum(1 for d in w.tasks if d.options[0][0] is pool and d.options[0][1] >= k)
        return ("frag", pool, k, count)

    def _reason(self, w: Waiter) -> str:
        if w.reservation is not None:
            return self._reservation_reason(w.reservation)
        if w.error is not None:
            return w.error
        rec = None
        if w.vc is not None:
            failed = w.vc.failed if w.prio >= 0 else self._opp_failed
            rec = failed.get(w.shape)
            if rec is not None and rec[0] == "defer":
                rec = rec[1]
        rec = rec or w.fail
        if rec is None:
            return "waiting for the next scheduling pass"
        kind = rec[0]
        if kind == "quota":
            text = self._quota_reason(rec[1], rec[2])
        elif kind == "frag":
            text = self._frag_reason(rec[1], rec[2], rec[3])
        elif kind in ("opp-total", "opp-frag"):
            text = "opportunistic: " + self._idle_reason(rec)
        else:
            text = "waiting"
        if self.borrow and w.prio >= 0 and w.bkey is not None and w.vc is not None:
            brec = self._borrow_failed.get(w.bkey) or w.bfail
            if brec is not None:
                text += "; nothing to borrow outside its quota: " + self._idle_reason(brec)
        vc = w.vc
        if vc is not None and vc.hold is not None and vc.hold.waiter is not w and w.prio >= 0:
            held = sum(len(leaves) for _t, _n, leaves in vc.hold.picks)
            text += f"; {held} cells are held for the older job {vc.hold.key} (anti-starvation)"
        return text

    def _idle_reason(self, rec: tuple) -> str:
        chain = rec[1]
        if rec[0] == "opp-total":
            return f"needs {rec[2]} idle {chain.leaf_type} at once, {chain.idle} idle in the cluster"
        k, count = rec[2], rec[3]
        b0, b1 = chain.opp_buckets
        fits = b0.count_at_least(k) + b1.count_at_least(k)
        if count > 1 and fits:
            return f"the gang needs {count} nodes with {k} idle {chain.leaf_type} each, {fits} have them"
        largest = max(b0.largest(), b1.largest())
        return f"no node with {k} idle {chain.leaf_type} (largest idle: {largest})"

    def _quota_reason(self, pool: Pool, need: int) -> str:
        leaf = pool.chain.leaf_type
        if pool.pinned:
            return (
                f"pinned cell {pool.pinned} is busy: {pool.free} of {pool.quota_leaves} {leaf} free, "
                f"this job needs {need}"
            )
        vc = pool.vc
        assert vc is not None
        text = (
            f"vc {vc.name}: {pool.quota_leaves} {leaf} guaranteed, {pool.used} in use by "
            f"{_plural(pool.jobs, 'job')}, this job needs {need}"
        )
        borrowed = vc.borrowed.get(leaf, 0)
        if borrowed:
            text += f" ({borrowed} more {leaf} borrowed outside its quota by {_plural(vc.borrow_jobs[leaf], 'job')})"
        if pool.reserved:
            text += f", {pool.reserved} reserved for other jobs"
        bad = sum(u.nleaves for u in pool.units_all.values() if not u.node.healthy)
        if bad:
            text += f", {bad} on unhealthy nodes"
        pins = sorted(pid for pid, p in vc.pinned.items() if p.chain.leaf_type == leaf)
        if pins:
            text += f"; its pinned cells ({', '.join(pins)}) only take jobs that name them"
        return text

    def _frag_reason(self, pool: Pool, k: int, count: int) -> str:
        leaf = pool.chain.leaf_type
        largest = max(pool.units.largest(), pool.largest_unbound_unit())
        fits = pool.units.count_at_least(k) + pool.unbound_units(k)
        if pool.pinned:
            return (
                f"pinned cell {pool.pinned} is busy: no node with {k} free {leaf} (largest free: {largest})"
            )
        vc = pool.vc
        assert vc is not None
        if count > 1 and fits:
            text = f"vc {vc.name}: the gang needs {count} nodes with {k} free {leaf} each, {fits} have them"
        else:
            text = f"vc {vc.name}: no node with {k} free {leaf} in one node (largest free: {largest})"
        bad = sum(1 for u in pool.units_all.values() if not u.node.healthy)
        if bad:
            text += f"; {_plural(bad, 'node')} of this vc unhealthy"
        return text

    def _reservation_reason(self, r: Reservation) -> str:
        blockers = {lf.user for _t, _n, leaves in r.picks for lf in leaves if lf.user is not None}
        if r.kind == "preempt":
            if not blockers:
                return "preempted jobs stopped; placing on their cells in the next pass"
            return f"waiting for {_plural(len(blockers), 'preempted job')} to stop"
        total = sum(len(leaves) for _t, _n, leaves in r.picks)
        free = sum(1 for _t, _n, leaves in r.picks for lf in leaves if lf.user is None)
        t = self.reservation_timeout or 0
        return (
            f"holding {total} cells for this job ({free} free so far, waiting for "
            f"{_plural(len(blockers), 'running job')} to finish): newer jobs were being scheduled "
            f"more than {t:g} s after it was submitted (anti-starvation)"
        )

    # ================================================================== binding
    def _bind_new(self, pool: Pool, k: int, dirty: bool, jb: list[Cell]) -> Cell | None:
        chain = pool.chain
        for lv in range(1, chain.top + 1):
            if pool.unbound[lv] and chain.unit_size(lv) >= k:
                cell = chain.pick(lv, dirty)
                if cell is not None:
                    chain.carve(cell)
                    self._bind(pool, cell)
                    jb.append(cell)
                    return cell
        return None

    def _bind(self, pool: Pool, cell: Cell, *, doomed: bool = False, pinned: bool = False) -> None:
        """Bind a carved-out cell to `pool`: its leaves become the VC's, its units fileable."""
        chain = pool.chain
        lv = cell.level
        if not pinned:
            pool.unbound[lv] -= 1
            chain.demand[lv] -= 1
        cell.owner = pool
        cell.doomed = doomed
        cell.vc_use = 0
        pool.bound[cell.idx] = cell
        memo = self._scan_memo
        if memo:  # the pool gains units: scans of it that failed earlier in this pass may succeed now
            for key in [key for key in memo if key[0] == pool.key]:
                del memo[key]
        if doomed:
            chain.doomed[cell.idx] = cell
            pool.doomed += 1
        dying = self._dying
        units = [cell] if lv <= chain.node_level else [n.cell for n in cell.nodes]
        for u in units:
            u.upool = pool
            pool.units_all[u.idx] = u
            gprio: dict[int, int] = {}
            u.ndying = u.nres = 0
            for lf in u.leaves:
                lf.pool = pool
                lf.bound = cell
                lf.unit = u
                if lf.user is not None:
                    if lf.prio < 0:
                        pool.opp += 1
                    else:
                        gprio[lf.prio] = gprio.get(lf.prio, 0) + 1
                    if lf.user in dying:
                        pool.dying += 1
                        u.ndying += 1
                if lf.reserved is not None:
                    u.nres += 1
            u.gprio = gprio
            node = u.node
            node.nbound += len(u.leaves)
            if node.healthy:
                pool.free += u.free
            self._refile_unit(u)
            self._refile_node(node)

    def _unbind(self, cell: Cell, bump: bool = True) -> None:
        pool = cell.owner
        chain = pool.chain
        lv = cell.level
        dying = self._dying
        units = [cell] if lv <= chain.node_level else [n.cell for n in cell.nodes]
        for u in units:
            if u.ukey >= 0:
                pool.units.discard(u.ukey, u.idx)
                u.ukey = -1
            u.upool = None
            for p, index in pool.pidx.items():
                ok = u.pkeys.get(p, -1)
                if ok >= 0:
                    index.discard(ok, u.idx)
            u.pkeys = {}
            u.gprio = {}
            u.ndying = u.nres = 0
            del pool.units_all[u.idx]
            node = u.node
            if node.healthy:
                pool.free -= u.free
            for lf in u.leaves:
                if lf.user is not None:
                    if lf.prio < 0:
                        pool.opp -= 1
                    if lf.user in dying:
                        pool.dying -= 1
                lf.pool = None
                lf.bound = None
                lf.unit = None
            node.nbound -= len(u.leaves)
            self._refile_node(node)
        del pool.bound[cell.idx]
        cell.owner = None
        if cell.doomed:
            cell.doomed = False
            del chain.doomed[cell.idx]
            pool.doomed -= 1
        pool.unbound[lv] += 1
        chain.demand[lv] += 1
        chain.give_back(cell)
        if bump and pool.vc is not None:
            pool.vc.version += 1

    def _maybe_unbind(self, cell: Cell) -> None:
        pool = cell.owner
        if pool is not None and pool.pinned is None and not cell.doomed and cell.vc_use == 0:
            self._unbind(cell)

    def _undoom(self, cell: Cell) -> None:
        """`cell` stays bound to its VC as an ordinary cell (the caller unbinds it if unused)."""
        cell.doomed = False
        del cell.chain.doomed[cell.idx]
        cell.owner.doomed -= 1

    def _fix_doom(self, chain: Chain) -> None:
        """Keep VC safety with bad hardware (HiveD §1.9): unbind doomed cells that are healthy and
        unused again, then bind bad free cells to VCs while healthy free cells cannot cover the
        unbound quota of all VCs."""
        for cell in list(chain.doomed.values()):
            if cell.nbad == 0:
                pool = cell.owner
                self._undoom(cell)
                if cell.vc_use == 0:
                    self._unbind(cell)
                elif pool.vc is not None:
                    pool.vc.version += 1
        for _ in range(len(chain.cells_at[1]) + 1):
            lv = chain.short_level()
            if not lv:
                return
            cell = chain.pick_bad(lv)
            pools = [
                p for vc in self._vc_list if (p := vc.pools.get(chain.name)) is not None and p.unbound[lv] > 0
            ]
            if cell is None or not pools:
                return
            pool = min(pools, key=lambda p: (-p.unbound[lv], p.vc.name))
            chain.carve(cell)
            self._bind(pool, cell, doomed=True)

    def _resolve(self, tp: TaskPlacement, t: TaskRequest, request: GangRequest | None) -> list[Cell]:
        """The free leaves a recorded task placement names (by cell address, else by node + devices)."""

        def usable(lf: Cell | None) -> bool:
            return lf is not None and lf.level == 1 and lf.user is None and lf.reserved is None

        if tp.cells:
            return [lf for a in tp.cells if usable(lf := self.topo.by_address.get(a))]
        node = self._nodes.get(tp.node)
        if node is None:
            return []
        if tp.gpus and node.is_gpu:
            want = set(tp.gpus)
            return [lf for lf in node.leaves if lf.device in want and usable(lf)]
        spec = role_spec(request.hived if request is not None else None, t.role)
        k = (
            leaves_for(t, node.chain.sku, spec.get("skuNum") if isinstance(spec.get("skuNum"), int) else None)
            or 1
        )
        return [lf for lf in node.leaves if usable(lf)][:k]

    # ================================================================== leaf state
    def _set(self, leaf: Cell, user: str | None, prio: int, reserved: str | None, bump: bool = True) -> None:
        """Change one leaf's user/reservation and every counter that depends on it."""
        ou = leaf.user
        op = leaf.prio
        orv = leaf.reserved
        leaf.user = user
        leaf.prio = prio
        leaf.reserved = reserved
        pool = leaf.pool
        node = leaf.node
        was_free = ou is None and orv is None
        now_free = user is None and reserved is None
        if was_free != now_free:
            d = 1 if now_free else -1
            for c in leaf.upath:
                c.free += d
            if leaf.pinned is None:
                node.idle += d
            if node.healthy:
                if leaf.pinned is None:
                    node.chain.idle += d
                if pool is not None:
                    pool.free += d
                nc = node.cell
                if d > 0:
                    if nc.free == nc.nleaves:
                        self._nfree_nodes += 1
                elif nc.free == nc.nleaves - 1:
                    self._nfree_nodes -= 1
            if now_free and bump:
                if pool is not None and pool.vc is not None:
                    pool.vc.version += 1
                if leaf.pinned is None:
                    self._opp_version += 1
        was_opp = ou is not None and op < 0
        now_opp = user is not None and prio < 0
        if was_opp != now_opp:
            d = 1 if now_opp else -1
            for c in leaf.apath:
                c.opp += d
                if c.in_free:
                    c.chain.fl_refresh(c)
            if pool is not None:
                pool.opp += d
        if pool is not None:
            u = leaf.unit
            was_g = ou is not None and op >= 0
            now_g = user is not None and prio >= 0
            if was_g != now_g:
                pool.used += 1 if now_g else -1
            if was_g and (not now_g or op != prio):
                g = u.gprio
                if g[op] == 1:
                    del g[op]
                else:
                    g[op] -= 1
            if now_g and (not was_g or op != prio):
                u.gprio[prio] = u.gprio.get(prio, 0) + 1
            if (orv is None) != (reserved is None):
                u.nres += 1 if reserved is not None else -1
            was_r = orv is not None and not was_g
            now_r = reserved is not None and not now_g
            if was_r != now_r:
                pool.reserved += 1 if now_r else -1
            was_use = was_g or orv is not None
            now_use = now_g or reserved is not None
            if was_use != now_use:
                leaf.bound.vc_use += 1 if now_use else -1
            if ou != user and self._dying:
                if ou is not None and ou in self._dying:
                    pool.dying -= 1
                    u.ndying -= 1
                if user is not None and user in self._dying:
                    pool.dying += 1
                    u.ndying += 1

    def _refile_unit(self, u: Cell) -> None:
        pool = u.upool
        if pool is None:
            return
        key = u.free if u.node.healthy else -1  # units with no free leaf too: preemption scans them
        if key != u.ukey:
            if u.ukey >= 0:
                pool.units.discard(u.ukey, u.idx)
            if key >= 0:
                pool.units.add(key, u.idx)
            u.ukey = key
        if pool.pidx:
            pkeys = u.pkeys
            for p, index in pool.pidx.items():
                nk = _preempt_key(u, p)
                ok = pkeys.get(p, -1)
                if nk != ok:
                    if ok >= 0:
                        index.discard(ok, u.idx)
                    if nk >= 0:
                        index.add(nk, u.idx)
                    pkeys[p] = nk

    def _refile_node(self, node: Node) -> None:
        key = node.idle if node.idle > 0 and node.healthy else -1
        cls = 0 if node.nbound == 0 else 1
        if key != node.okey or cls != node.ocls:
            buckets = node.chain.opp_buckets
            if node.okey >= 0:
                buckets[node.ocls].discard(node.okey, node.cell.idx)
            if key >= 0:
                buckets[cls].add(key, node.cell.idx)
            node.okey = key
            node.ocls = cls

    def _refile_leaves(self, leaves: Iterable[Cell]) -> None:
        last_u = None
        last_n = None
        for lf in leaves:
            u = lf.unit
            if u is not None and u is not last_u:
                self._refile_unit(u)
                last_u = u
            n = lf.node
            if n is not last_n:
                self._refile_node(n)
                last_n = n


def _preempt_key(u: Cell, p: int) -> int:
    """Upper bound of the leaves of unit u a gang of priority threshold p could use by preempting
    (free + opportunistic + dying + guaranteed below p, at most the unreserved ones); -1 if unhealthy."""
    if not u.node.healthy:
        return -1
    key = u.free + u.opp + u.ndying
    if p > 0 and u.gprio:
        key += sum(n for q, n in u.gprio.items() if q < p)
    cap = u.nleaves - u.nres
    return key if key < cap else cap


def _empty_status() -> dict[str, int]:
    return {
        "guaranteed": 0,
        "used": 0,
        "reserved": 0,
        "unhealthy": 0,
        "free": 0,
        "opportunistic_used": 0,
        "doomed": 0,
        "jobs": 0,
        "borrowed": 0,
        "borrowed_jobs": 0,
    }


def _opt_key(opt: object) -> str:
    return opt.key if isinstance(opt, Pool) else opt.name  # type: ignore[attr-defined]


def _remove_sorted(lst: list[tuple], item: tuple) -> None:
    i = bisect.bisect_left(lst, item)
    if i < len(lst) and lst[i] == item:
        del lst[i]


def _dec(counts: dict, key) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)


def _pack_free(unit: Cell, k: int) -> list[Cell]:
    """k free leaves of `unit`, packed: descend into the child with the fewest free leaves that
    still has k (best fit), so the rest of the cell stays whole for bigger requests."""
    cell = unit
    while cell.level > 1:
        best = None
        bf = 0
        for ch in cell.children:
            f = ch.free
            if f >= k and (best is None or f < bf):
                best, bf = ch, f
        if best is None:
            break
        cell = best
    return [lf for lf in cell.leaves if lf.user is None and lf.reserved is None][:k]
