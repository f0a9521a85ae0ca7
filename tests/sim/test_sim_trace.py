"""Trace CSV loading (errors name line and column) and the synthetic Philly-like generator."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import pytest

from openxpu_server.scheduler.layout import load_layout
from openxpu_server.sim.cluster import max_task_leaves
from openxpu_server.sim.trace import (
    COLUMNS,
    TraceError,
    TraceJob,
    diurnal_rate,
    gen_trace,
    gen_trace_for_layout,
    load_trace,
    write_trace,
)

LAYOUTS = Path(__file__).resolve().parents[2] / "cluster" / "layouts"
HEADER = ",".join(COLUMNS)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


def test_loads_a_valid_trace_with_any_column_order_and_extras(tmp_path):
    p = write(
        tmp_path,
        "duration,vc,user,priority_class,task_count,gpus_per_task,submit_time,comment\n"
        "100,a,alice,prod,2,4,0,x\n\n# a comment line\n50.5,b,bob,oppo,1,0,12.5,\n",
    )
    jobs = load_trace(p)
    assert [j.job_id for j in jobs] == ["job0", "job1"]
    assert jobs[0] == TraceJob("job0", 0.0, "a", "alice", "prod", 2, 4, 100.0)
    assert jobs[0].gpus == 8 and jobs[0].priority == 100
    assert jobs[1].duration == 50.5 and jobs[1].gpus_per_task == 0 and jobs[1].priority == -1


@pytest.mark.parametrize(
    "row, message",
    [
        ("x,a,u,prod,1,1,10", "line 2, column 'submit_time': 'x' is not a number"),
        ("-1,a,u,prod,1,1,10", "line 2, column 'submit_time': -1 must be >= 0.0"),
        ("0,,u,prod,1,1,10", "line 2, column 'vc': empty"),
        ("0,a,u,urgent,1,1,10", "line 2, column 'priority_class': 'urgent' is not one of prod, test, oppo"),
        ("0,a,u,prod,1.5,1,10", "line 2, column 'task_count': '1.5' is not an integer"),
        ("0,a,u,prod,0,1,10", "line 2, column 'task_count': 0 must be >= 1"),
        ("0,a,u,prod,1,-2,10", "line 2, column 'gpus_per_task': -2 must be >= 0"),
        ("0,a,u,prod,1,1,0", "line 2, column 'duration': 0 must be > 0.0"),
        ("0,a,u,prod,1,1,nan", "line 2, column 'duration': nan must be > 0.0"),
        ("0,a,u,prod,1", "line 2: 5 field(s), the header has 7"),
    ],
)
def test_bad_values_name_the_line_and_column(tmp_path, row, message):
    p = write(tmp_path, f"{HEADER}\n{row}\n")
    with pytest.raises(TraceError) as e:
        load_trace(p)
    assert message in str(e.value)
    assert str(p) in str(e.value)


def test_later_lines_are_counted_right(tmp_path):
    p = write(tmp_path, f"{HEADER}\n0,a,u,prod,1,1,10\n\n5,a,u,prod,1,1,ten\n")
    with pytest.raises(TraceError, match=r"line 4, column 'duration': 'ten' is not a number"):
        load_trace(p)


def test_header_and_file_errors(tmp_path):
    with pytest.raises(TraceError, match="lacks column\\(s\\) priority_class, duration"):
        load_trace(write(tmp_path, "submit_time,vc,user,task_count,gpus_per_task\n"))
    with pytest.raises(TraceError, match="the file is empty"):
        load_trace(write(tmp_path, ""))
    with pytest.raises(TraceError, match="no jobs after the header"):
        load_trace(write(tmp_path, HEADER + "\n"))
    with pytest.raises(TraceError, match="cannot read the trace"):
        load_trace(tmp_path / "missing.csv")
    p = write(tmp_path, "job_id," + HEADER + "\nj,0,a,u,prod,1,1,10\nj,1,a,u,prod,1,1,10\n")
    with pytest.raises(TraceError, match="line 3, column 'job_id': 'j' appears twice"):
        load_trace(p)


def test_write_then_load_round_trips(tmp_path):
    jobs = gen_trace(jobs=50, seed=3)
    write_trace(tmp_path / "t.csv", jobs)
    again = load_trace(tmp_path / "t.csv")
    assert [(j.job_id, j.vc, j.user, j.priority_class, j.task_count, j.gpus_per_task) for j in again] == [
        (j.job_id, j.vc, j.user, j.priority_class, j.task_count, j.gpus_per_task) for j in jobs
    ]
    assert all(abs(a.submit_time - b.submit_time) < 0.06 and a.duration == b.duration for a, b in zip(again, jobs, strict=True))


def test_gen_trace_is_seeded():
    a = gen_trace(jobs=300, seed=7)
    assert a == gen_trace(jobs=300, seed=7)
    assert a != gen_trace(jobs=300, seed=8)


def test_gen_trace_has_the_philly_like_mix():
    jobs = gen_trace(jobs=4000, seed=1, vcs=["big", "mid", "small"], total_gpus=800)
    assert len(jobs) == 4000
    assert [j.submit_time for j in jobs] == sorted(j.submit_time for j in jobs)
    sizes = Counter(j.gpus for j in jobs)
    one = sizes[1] / len(jobs)
    assert 0.65 < one < 0.80  # dominated by 1-GPU jobs
    assert (sizes[2] + sizes[4]) / len(jobs) > 0.08 and sizes[8] / len(jobs) > 0.05
    assert sum(v for k, v in sizes.items() if k >= 16) / len(jobs) < 0.06
    # multi-GPU jobs dominate the GPU-hours
    hours = Counter()
    for j in jobs:
        hours[j.gpus == 1] += j.gpus * j.duration
    assert hours[False] > 2 * hours[True]
    # heavy-tailed run times around Philly's median of ~20 min
    d = sorted(j.duration for j in jobs)
    median = statistics.median(d)
    assert 600 < median < 2400
    assert d[int(0.9 * len(d))] > 8 * median and d[int(0.1 * len(d))] < 150
    # VCs loaded differently; several users per VC
    per_vc = Counter(j.vc for j in jobs)
    assert set(per_vc) == {"big", "mid", "small"} and len(set(per_vc.values())) == 3
    assert all(len({j.user for j in jobs if j.vc == vc}) >= 2 for vc in per_vc)
    # multi-node jobs are split into whole-node tasks
    assert all(j.gpus_per_task <= 8 for j in jobs) and any(j.task_count > 1 for j in jobs)
    assert set(Counter(j.priority_class for j in jobs)) == {"prod", "test", "oppo"}


def test_gen_trace_arrivals_are_diurnal_and_bursty():
    jobs = gen_trace(jobs=6000, seed=2, load=0.3)  # a long trace: several days
    assert jobs[-1].submit_time > 3 * 86400
    day = sum(1 for j in jobs if 11 <= (j.submit_time % 86400) / 3600 < 17)
    night = sum(1 for j in jobs if 0 <= (j.submit_time % 86400) / 3600 < 6)
    assert day > 2 * night
    assert diurnal_rate(14 * 3600) == 1.0 and diurnal_rate(2 * 3600) < 0.5
    gaps = [b.submit_time - a.submit_time for a, b in zip(jobs, jobs[1:], strict=False) if a.user == b.user]
    assert sum(g < 300 for g in gaps) > 0.2 * len(jobs)  # batches of jobs from one user


def test_gen_trace_for_layout_respects_quota_and_cell_sizes(tmp_path):
    layout = load_layout(LAYOUTS / "gpu-pod.yaml")
    jobs = gen_trace_for_layout(tmp_path / "t.csv", layout, jobs=400, seed=0)
    assert load_trace(tmp_path / "t.csv")[0].job_id == jobs[0].job_id
    assert {j.vc for j in jobs} == {"nlp", "vision", "research"}
    assert max_task_leaves(layout, "research") == 2 and max_task_leaves(layout, "vision") == 4
    for j in jobs:
        quota = {"nlp": 8, "vision": 8, "research": 4}[j.vc]
        cell = {"nlp": 8, "vision": 4, "research": 2}[j.vc]
        assert j.gpus <= quota and j.gpus_per_task <= cell, j
