"""Every valid protocol file of the corpus is accepted and really runs on the engine.

The node is declared large (128 CPUs, 16 GPUs) so the corpus' GPU jobs fit; their commands run in
the host environment, so they may fail (no torchrun here) but they must be started, observed and
finished like any job, and never be left WAITING or UNKNOWN.
"""

from __future__ import annotations

import time
from pathlib import Path

from jobhelpers import make_nodes

CORPUS = Path(__file__).resolve().parents[1] / "protocol" / "corpus" / "valid"
FINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def test_valid_corpus_jobs_run(make_engine):
    engine = make_engine(make_nodes(cpu=128, memory_mb=512 * 1024, gpus=16))
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 12
    keys = {f.name: engine.jobs.submit("corpus", f.read_text()) for f in files}
    started: set[str] = set()
    deadline = time.monotonic() + 120
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for name, key in keys.items():
            state, _, _ = engine.jobs.job_state(key)
            states[name] = state
            if state == "RUNNING" and name not in started:
                started.add(name)
                engine.jobs.set_execution_type(key, "STOP")  # some corpus jobs sleep forever
            elif state in FINAL:
                started.add(name)
        if all(s in FINAL for s in states.values()):
            break
        engine.wait_for_change(0.2)
    assert all(s in FINAL for s in states.values()), {n: s for n, s in states.items() if s not in FINAL}
    for name, key in keys.items():
        detail = engine.jobs.detail(key)
        tasks = [t for r in detail["taskRoles"].values() for t in r["taskStatuses"]]
        assert tasks and all(t["taskState"] in FINAL for t in tasks), (name, tasks)
        assert any(t["launchedTime"] for t in tasks), f"{name}: no task was ever started"
