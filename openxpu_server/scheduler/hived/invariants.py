"""Recompute every incremental counter of a `HivedScheduler` from scratch and compare (tests, debugging).

The scheduler keeps many counters up to date incrementally for speed; one missed update would make
it place onto busy cells or wait forever. `check_invariants` is the oracle the randomized tests run
after every operation. It is O(cluster size) and never used on the scheduling path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .scheduler import _preempt_key

if TYPE_CHECKING:
    from .scheduler import HivedScheduler


class InvariantError(AssertionError):
    pass


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise InvariantError(what)


def check_invariants(s: HivedScheduler) -> None:
    held_leaves: dict[int, str] = {}
    for key, h in s._held.items():
        for _t, _n, leaves in h.tasks:
            for lf in leaves:
                _expect(lf.user == key, f"{lf} of {key} has user {lf.user}")
                _expect(lf.prio == h.prio, f"{lf} prio {lf.prio} != {h.prio}")
                held_leaves[lf.idx] = key
    reserved_leaves: dict[int, str] = {}
    for key, r in s._reservations.items():
        _expect(r.waiter.reservation is r, f"reservation {key} not linked to its waiter")
        for _t, _n, leaves in r.picks:
            for lf in leaves:
                _expect(lf.reserved == key, f"{lf} reserved {lf.reserved} != {key}")
                reserved_leaves[lf.idx] = key
    nfree_nodes = 0
    for chain in s._chains.values():
        idle = 0
        for node in chain.nodes:
            leaves = node.leaves
            for lf in leaves:
                if lf.user is not None:
                    _expect(held_leaves.get(lf.idx) == lf.user, f"{lf} used by {lf.user} not held")
                else:
                    _expect(lf.idx not in held_leaves, f"{lf} held but free")
                if lf.reserved is not None:
                    _expect(reserved_leaves.get(lf.idx) == lf.reserved, f"{lf} stray reservation")
                if lf.user is not None and lf.prio >= 0:
                    _expect(
                        lf.pool is not None and lf.pool.vc is s._held[lf.user].vc,
                        f"{lf} guaranteed outside its VC",
                    )
                if lf.reserved is not None:
                    _expect(lf.pool is not None, f"{lf} reserved outside bound cells")
            n_idle = sum(1 for lf in leaves if lf.user is None and lf.reserved is None and lf.pinned is None)
            _expect(node.idle == n_idle, f"{node} idle {node.idle} != {n_idle}")
            if node.healthy:
                idle += n_idle
            _expect(node.nbound == sum(1 for lf in leaves if lf.pool is not None), f"{node} nbound")
            want_key = n_idle if n_idle > 0 and node.healthy else -1
            _expect(node.okey == want_key, f"{node} okey {node.okey} != {want_key}")
            if want_key >= 0:
                cls = 0 if node.nbound == 0 else 1
                _expect(node.ocls == cls, f"{node} class")
                _expect(node.cell.idx in chain.opp_buckets[cls].sets[want_key], f"{node} not filed")
            if node.healthy and all(lf.user is None and lf.reserved is None for lf in leaves):
                nfree_nodes += 1
            for c in [node.cell, *node.subcells]:
                f = sum(1 for lf in c.leaves if lf.user is None and lf.reserved is None)
                _expect(c.free == f, f"{c} free {c.free} != {f}")
                _expect(c.nbad == (0 if node.healthy else 1), f"{c} nbad")
        _expect(chain.idle == idle, f"chain {chain.name} idle {chain.idle} != {idle}")
        for lv in range(1, chain.top + 1):
            for c in chain.cells_at[lv]:
                opp = sum(1 for lf in _leafset(c) if lf.user is not None and lf.prio < 0)
                _expect(c.opp == opp, f"{c} opp {c.opp} != {opp}")
                if lv >= chain.node_level:
                    _expect(c.nbad == sum(1 for nd in c.nodes if not nd.healthy), f"{c} nbad")
        # free lists
        for lv in range(1, chain.top + 1):
            fl = chain.free[lv]
            _expect(sum(1 for c in fl.values() if c.nbad == 0) == chain.fh[lv], f"{chain.name} fh[{lv}]")
            clean = {i for i, c in fl.items() if c.nbad == 0 and c.opp == 0}
            _expect(clean == set(chain.clean[lv]), f"{chain.name} clean[{lv}]")
            for c in chain.cells_at[lv]:
                _expect(c.in_free == (c.idx in fl), f"{c} in_free flag")
                if c.in_free:
                    _expect(c.owner is None, f"{c} free and bound")
                    a = c.parent
                    while a is not None:
                        _expect(not a.in_free and a.owner is None, f"{c} free inside {a}")
                        a = a.parent
                if c.children and all(ch.in_free for ch in c.children):
                    _expect(False, f"{c}: all children free but not merged")
        # every leaf covered exactly once by a free cell or a bound cell
        for node in chain.nodes:
            for lf in node.leaves:
                covers = [a for a in lf.apath if a.in_free or a.owner is not None]
                _expect(len(covers) == 1, f"{lf} covered by {covers}")
                b = covers[0]
                if b.owner is not None:
                    _expect(lf.bound is b and lf.pool is b.owner, f"{lf} bound link")
                else:
                    _expect(
                        lf.bound is None and lf.pool is None and lf.unit is None, f"{lf} stale bound link"
                    )
        demand = [0] * (chain.top + 1)
        for vc in s._vc_list:
            pool = vc.pools.get(chain.name)
            if pool is None:
                continue
            bound_at = [0] * (chain.top + 1)
            for c in pool.bound.values():
                bound_at[c.level] += 1
            for lv in range(1, chain.top + 1):
                _expect(pool.unbound[lv] + bound_at[lv] == pool.quota[lv], f"{vc.name} quota at {lv}")
                demand[lv] += pool.unbound[lv]
        _expect(demand == chain.demand, f"{chain.name} demand {chain.demand} != {demand}")
        if not chain.bad_nodes:
            _expect(chain.short_level() == 0, f"{chain.name} unsafe")
        doomed = {c.idx for cells in chain.cells_at for c in cells if c.doomed}
        _expect(set(chain.doomed) == doomed, "doomed set")
    _expect(s._nfree_nodes == nfree_nodes, f"free nodes {s._nfree_nodes} != {nfree_nodes}")
    # pools
    for vc in s._vc_list:
        for pool in vc.all_pools():
            free = used = reserved = opp = dying = 0
            units = {}
            for c in pool.bound.values():
                _expect(c.owner is pool, f"{c} owner")
                use = 0
                us = [c] if c.level <= c.chain.node_level else [n.cell for n in c.nodes]
                for u in us:
                    units[u.idx] = u
                    _expect(u.upool is pool, f"{u} upool")
                    key = u.free if u.node.healthy else -1
                    _expect(u.ukey == key, f"{u} ukey {u.ukey} != {key}")
                    if key >= 0:
                        _expect(u.idx in pool.units.sets[key], f"{u} not filed")
                    gprio: dict[int, int] = {}
                    for lf in u.leaves:
                        if lf.user is not None and lf.prio >= 0:
                            gprio[lf.prio] = gprio.get(lf.prio, 0) + 1
                    _expect(u.gprio == gprio, f"{u} gprio {u.gprio} != {gprio}")
                    _expect(u.nres == sum(1 for lf in u.leaves if lf.reserved is not None), f"{u} nres")
                    nd = sum(1 for lf in u.leaves if lf.user is not None and lf.user in s._dying)
                    _expect(u.ndying == nd, f"{u} ndying {u.ndying} != {nd}")
                    for p, index in pool.pidx.items():
                        want = _preempt_key(u, p)
                        _expect(u.pkeys.get(p, -1) == want, f"{u} pkey[{p}] {u.pkeys.get(p)} != {want}")
                        if want >= 0:
                            _expect(u.idx in index.sets[want], f"{u} not in preemption index {p}")
                    for lf in u.leaves:
                        _expect(lf.unit is u, f"{lf} unit")
                        g = lf.user is not None and lf.prio >= 0
                        if lf.user is None and lf.reserved is None and u.node.healthy:
                            free += 1
                        used += g
                        reserved += lf.reserved is not None and not g
                        opp += lf.user is not None and lf.prio < 0
                        dying += lf.user is not None and lf.user in s._dying
                        use += g or lf.reserved is not None
                _expect(c.vc_use == use, f"{c} vc_use {c.vc_use} != {use}")
                if pool.pinned is None and not c.doomed:
                    _expect(use > 0, f"{c} bound to {vc.name} but unused")
            _expect(set(units) == set(pool.units_all), f"{pool.key} units_all")
            for p, index in pool.pidx.items():
                healthy = sum(1 for u in units.values() if u.node.healthy)
                _expect(len(index) == healthy, f"{pool.key} preemption index {p} size")
            _expect(len(pool.units) == sum(1 for u in units.values() if u.ukey >= 0), f"{pool.key} buckets")
            for name, want in (
                ("free", free),
                ("used", used),
                ("reserved", reserved),
                ("opp", opp),
                ("dying", dying),
            ):
                _expect(
                    getattr(pool, name) == want,
                    f"{vc.name}/{pool.key} {name} {getattr(pool, name)} != {want}",
                )
        shapes: dict[tuple, int] = {}
        for ok in vc.gorder:
            w = s._waiters[ok[2]]
            if w.error is None and w.reservation is None:
                shapes[w.shape] = shapes.get(w.shape, 0) + 1
        _expect(shapes == vc.shapes, f"{vc.name} shapes {vc.shapes} != {shapes}")


def _leafset(cell) -> set:
    if cell.leaves:
        return set(cell.leaves)
    return {lf for nd in cell.nodes for lf in nd.leaves}
