"""Job traces for the simulator: a CSV format, its loader, and a synthetic Philly-like generator.

CSV columns (header required, any order, extra columns ignored):

| column | meaning |
|---|---|
| `submit_time` | seconds from the start of the trace (float >= 0) |
| `vc` | virtual cluster |
| `user` | user name |
| `priority_class` | `prod`, `test` or `oppo` (`crit` is accepted too) |
| `task_count` | tasks of the gang (int >= 1) |
| `gpus_per_task` | GPUs (leaf cells) per task (int >= 0) |
| `duration` | run time in seconds once started (float > 0) |

An optional `job_id` column names the jobs (default `job<row>`).
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..protocol.spec import PRIORITY_VALUES

COLUMNS = ("submit_time", "vc", "user", "priority_class", "task_count", "gpus_per_task", "duration")
PRIORITY_CLASSES = ("prod", "test", "oppo", "crit")


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, line and column."""


@dataclass
class TraceJob:
    job_id: str
    submit_time: float
    vc: str
    user: str
    priority_class: str
    task_count: int
    gpus_per_task: int
    duration: float

    @property
    def gpus(self) -> int:
        return self.task_count * self.gpus_per_task

    @property
    def priority(self) -> int:
        return PRIORITY_VALUES[self.priority_class]


# ------------------------------------------------------------------------------------------ load / save
def load_trace(path: str | Path) -> list[TraceJob]:
    """Read a trace CSV; raises `TraceError` naming the line and column of the first bad value."""
    path = Path(path)
    try:
        f = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise TraceError(f"{path}: cannot read the trace: {e.strerror or e}") from e
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise TraceError(f"{path}: the file is empty; expected a header line with {', '.join(COLUMNS)}") from None
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise TraceError(
                f"{path}, line 1: the header lacks column(s) {', '.join(missing)} "
                f"(expected {', '.join(COLUMNS)}; got {', '.join(header) or 'nothing'})"
            )
        col = {name: header.index(name) for name in header}
        jobs = []
        seen: set[str] = set()
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if row[0].lstrip().startswith("#"):
                continue
            if len(row) < len(header):
                raise TraceError(f"{path}, line {line}: {len(row)} field(s), the header has {len(header)}")

            def cell(name: str, row=row, line=line) -> str:
                value = row[col[name]].strip()
                if not value:
                    raise TraceError(f"{path}, line {line}, column '{name}': empty")
                return value

            def number(name: str, kind, low, strict=False, cell=cell, line=line):
                text = cell(name)
                try:
                    value = kind(text)
                except ValueError:
                    what = "an integer" if kind is int else "a number"
                    raise TraceError(f"{path}, line {line}, column '{name}': {text!r} is not {what}") from None
                if (kind is float and not math.isfinite(value)) or value < low or (strict and value == low):
                    bound = f"> {low}" if strict else f">= {low}"
                    raise TraceError(f"{path}, line {line}, column '{name}': {text} must be {bound}")
                return value

            pc = cell("priority_class")
            if pc not in PRIORITY_CLASSES:
                raise TraceError(
                    f"{path}, line {line}, column 'priority_class': {pc!r} is not one of {', '.join(PRIORITY_CLASSES)}"
                )
            job_id = row[col["job_id"]].strip() if "job_id" in col and row[col["job_id"]].strip() else f"job{len(jobs)}"
            if job_id in seen:
                raise TraceError(f"{path}, line {line}, column 'job_id': {job_id!r} appears twice")
            seen.add(job_id)
            jobs.append(
                TraceJob(
                    job_id=job_id,
                    submit_time=number("submit_time", float, 0.0),
                    vc=cell("vc"),
                    user=cell("user"),
                    priority_class=pc,
                    task_count=number("task_count", int, 1),
                    gpus_per_task=number("gpus_per_task", int, 0),
                    duration=number("duration", float, 0.0, strict=True),
                )
            )
    if not jobs:
        raise TraceError(f"{path}: no jobs after the header")
    return jobs


def write_trace(path: str | Path, jobs: Iterable[TraceJob]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("job_id", *COLUMNS))
        for j in jobs:
            w.writerow(
                (j.job_id, _num(j.submit_time), j.vc, j.user, j.priority_class, j.task_count, j.gpus_per_task, _num(j.duration))
            )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


# ------------------------------------------------------------------------------------------ generator
# GPUs per job (scheduling.md §5.1 working prior): dominated by 1-GPU jobs, multi-GPU jobs dominate GPU-hours.
SIZE_MIX: dict[int, float] = {1: 0.72, 2: 0.07, 4: 0.08, 8: 0.10, 16: 0.02, 32: 0.008, 64: 0.002}
# Run time: a short debug component, then log-normal training runs whose median grows with size
# (Philly notebook Fig. 2: ~20 min at 1 GPU, ~1 h at 2-4, 3-6 h at 5-8, 2-4 h above).
DEBUG_FRACTION = 0.25
DEBUG_MEDIAN_S, DEBUG_SIGMA = 100.0, 0.9
TRAIN_MEDIAN_S = {1: 1800.0, 2: 3600.0, 4: 3600.0, 8: 4 * 3600.0, 16: 3 * 3600.0, 32: 3 * 3600.0, 64: 3 * 3600.0}
TRAIN_SIGMA = 1.7
MIN_DURATION_S, MAX_DURATION_S = 10.0, 4 * 86400.0  # Philly p99 ~80 h
PRIORITY_MIX = {"prod": 0.2, "test": 0.7, "oppo": 0.1}
MEAN_BATCH = 1.8  # jobs submitted together (hyper-parameter sweeps): geometric batch sizes
BATCH_GAP_S = 45.0  # mean gap between jobs of a batch


def diurnal_rate(t: float) -> float:
    """Relative arrival rate at `t` seconds (t=0 is Monday 00:00): a day peak around 14:00,
    a night trough, quieter weekends. Between 0.25 and 1.0."""
    day = (t % 86400.0) / 86400.0
    rate = 0.55 + 0.45 * math.cos(2 * math.pi * (day - 14 / 24))
    if (t // 86400.0) % 7 >= 5:
        rate *= 0.5
    return max(rate, 0.25)


def gen_trace(
    out: str | Path | None = None,
    *,
    jobs: int = 5000,
    seed: int = 0,
    vcs: Sequence[str] | dict[str, float] | None = None,
    total_gpus: int = 1600,
    gpus_per_node: int = 8,
    max_job_gpus: dict[str, int] | None = None,
    max_task_gpus: dict[str, int] | None = None,
    load: float = 0.75,
    load_spread: float = 0.3,
) -> list[TraceJob]:
    """A synthetic Philly-like trace (scheduling.md §5), deterministic for a `seed`.

    `vcs`: VC names (shares then fall off like 1/rank^0.8) or VC -> share of the cluster.
    `load`: offered load, the GPU-seconds that fall inside the trace span / (total_gpus x span)
    (a job runs min(duration, span/2) inside it on average). Each VC's own load
    (its GPU-seconds over its share) is spread by `load_spread` around `load`: the busiest VC is
    offered load x (1 + spread) of its share, the quietest load x (1 - spread), so busy VCs want to
    borrow what quiet ones leave idle. `max_job_gpus` caps each VC's job size (e.g. its quota,
    rounded down to a power of two); jobs bigger than `max_task_gpus` of their VC (default
    `gpus_per_node`) are split into equal tasks of at most that many GPUs.
    """
    if jobs < 1:
        raise ValueError("jobs must be >= 1")
    rng = random.Random(seed)
    shares = _shares(vcs)
    names = list(shares)
    spread = sorted(names, key=lambda _: rng.random())
    factors = {vc: 1 + load_spread * (1 - 2 * i / max(1, len(spread) - 1)) if len(spread) > 1 else 1.0 for i, vc in enumerate(spread)}
    weights = [shares[vc] * factors[vc] for vc in names]
    users = {vc: [f"{vc}-u{k}" for k in range(rng.randint(4, 16))] for vc in names}
    sizes, size_p = zip(*SIZE_MIX.items(), strict=True)

    batches = []  # (vc, user, gpus, priority class, [durations], GPUs per task)
    count = 0
    while count < jobs:
        vc = rng.choices(names, weights)[0]
        cap = (max_job_gpus or {}).get(vc, total_gpus)
        gpus = rng.choices(sizes, size_p)[0]
        while gpus > max(1, cap) and gpus > 1:
            gpus //= 2
        per_task = _pow2_floor(min(gpus, (max_task_gpus or {}).get(vc, gpus_per_node) or 1))
        pool = users[vc]
        user = pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
        pc = rng.choices(list(PRIORITY_MIX), list(PRIORITY_MIX.values()))[0]
        k = min(jobs - count, 1 + int(math.log(1 - rng.random()) / math.log(1 - 1 / MEAN_BATCH)))
        base = _duration(rng, gpus)
        durs = [min(MAX_DURATION_S, max(MIN_DURATION_S, base * rng.lognormvariate(0, 0.3))) for _ in range(k)]
        batches.append((vc, user, gpus, pc, durs, per_task))
        count += k

    span = _span(batches, load * total_gpus)
    heads = sorted(_arrival(rng, span) for _ in batches)
    rng.shuffle(batches)
    out_jobs: list[TraceJob] = []
    for t, (vc, user, gpus, pc, durs, per_task) in zip(heads, batches, strict=True):
        for d in durs:
            out_jobs.append(TraceJob("", round(t, 1), vc, user, pc, gpus // per_task, per_task, round(d)))
            t += rng.expovariate(1 / BATCH_GAP_S)
    out_jobs.sort(key=lambda j: j.submit_time)
    for i, j in enumerate(out_jobs):
        j.job_id = f"job{i}"
    if out is not None:
        write_trace(out, out_jobs)
    return out_jobs


def _span(batches: list, capacity: float) -> float:
    """The trace span T at which the GPU-seconds that fall inside it match `capacity` x T: a job
    submitted at a uniform time in [0, T) runs inside it for min(d, T/2) seconds on average (so
    long jobs that spill past the end count only partly). Fixed-point iteration from the full demand."""
    span = max(3600.0, sum(g * d for _, _, g, _, durs, _ in batches for d in durs) / capacity)
    for _ in range(30):
        inside = sum(g * min(d, span / 2) for _, _, g, _, durs, _ in batches for d in durs)
        new = max(3600.0, inside / capacity)
        if abs(new - span) < 1.0:
            break
        span = new
    return span


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, int(n)).bit_length() - 1)


def gen_trace_for_layout(out: str | Path | None, layout, **kwargs) -> list[TraceJob]:
    """`gen_trace` for a `Layout`: its VCs with their quotas as shares, job sizes capped by each
    VC's quota of one leaf type (a gang stays within one type) and tasks by its biggest cell (a task never needs more than one VC cell), the GPU
    total and node size of the cluster. Pinned cells are not counted (see `cluster.ClusterInfo`)."""
    from .cluster import cluster_info, max_task_leaves, quota_by_leaf_type

    info = cluster_info(layout)
    sku = info.sku.get(info.main_leaf_type)
    g = sku.gpu if sku is not None and sku.gpu > 0 else 1
    quota = {vc: q * g for vc, q in info.quota.items() if q > 0}
    if not quota:
        raise ValueError("the layout has no virtual cluster with virtual cells")
    kwargs.setdefault("vcs", {vc: float(q) for vc, q in quota.items()})
    kwargs.setdefault("total_gpus", info.total_gpus)
    kwargs.setdefault("gpus_per_node", info.node_leaves * g)
    kwargs.setdefault("max_job_gpus", {vc: max(quota_by_leaf_type(layout, vc).values()) * g for vc in quota})
    kwargs.setdefault("max_task_gpus", {vc: max_task_leaves(layout, vc) * g for vc in quota})
    return gen_trace(out, **kwargs)


def _shares(vcs: Sequence[str] | dict[str, float] | None) -> dict[str, float]:
    if vcs is None:
        vcs = ["vc1", "vc2", "vc3", "vc4"]
    if isinstance(vcs, dict):
        shares = {k: float(v) for k, v in vcs.items() if v > 0} or dict.fromkeys(vcs, 1.0)
    else:
        if not vcs:
            raise ValueError("at least one VC")
        shares = {vc: 1 / (i + 1) ** 0.8 for i, vc in enumerate(vcs)}
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def _duration(rng: random.Random, gpus: int) -> float:
    if rng.random() < DEBUG_FRACTION:
        d = rng.lognormvariate(math.log(DEBUG_MEDIAN_S), DEBUG_SIGMA)
    else:
        median = TRAIN_MEDIAN_S.get(gpus) or TRAIN_MEDIAN_S[max(k for k in TRAIN_MEDIAN_S if k <= gpus)]
        d = rng.lognormvariate(math.log(median), TRAIN_SIGMA)
    return min(MAX_DURATION_S, max(MIN_DURATION_S, d))


def _arrival(rng: random.Random, span: float) -> float:
    """One arrival time in [0, span) from the diurnal rate (thinning)."""
    while True:
        t = rng.uniform(0, span)
        if rng.random() <= diurnal_rate(t):
            return t
