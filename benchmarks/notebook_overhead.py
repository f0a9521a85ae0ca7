"""The same notebook as a one-task OpenXPU job vs papermill run directly, in the same run.

    python benchmarks/notebook_overhead.py [--runs 5] [--notebook tests/lab/data/train_model.ipynb]

Both sides execute the notebook with papermill in a fresh kernel; the job side adds the conversion,
the submit, scheduling, the task launch, parameter injection and the executed notebook kept as an
output (embedded engine, local backend, SQLite in a temp dir). Prints the median of each side and
the ratio (goal: <= 1.15x).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_papermill(notebook: Path, out: Path) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(out), "-p", "x", "3", "--no-progress-bar"],
                   check=True, capture_output=True)
    return time.perf_counter() - t


def run_job(engine, notebook: Path, i: int) -> float:
    from openxpu_lab.convert import notebook_to_job

    t = time.perf_counter()
    key = engine.jobs.submit("bench", notebook_to_job(notebook, parameters={"x": 3}, name=f"nb-{i}"))
    while True:
        state, _, _ = engine.jobs.job_state(key)
        if state in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        engine.wait_for_change(0.05)
    elapsed = time.perf_counter() - t
    if state != "SUCCEEDED":
        raise SystemExit(f"{key} {state}: {engine.jobs.detail(key)['jobStatus']['appExitDiagnostics']}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--notebook", type=Path, default=ROOT / "tests" / "lab" / "data" / "train_model.ipynb")
    args = ap.parse_args()

    from openxpu_server.backends.local import LocalBackend
    from openxpu_server.engine import Engine, single_box_nodes
    from openxpu_server.scheduler.fit import FitScheduler

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(db_url=f"sqlite:///{tmp}/bench.sqlite", work_root=Path(tmp) / "jobs", backend=LocalBackend(),
                        scheduler=FitScheduler(single_box_nodes()), poll_interval=0.05)
        engine.start()
        try:
            run_papermill(args.notebook, Path(tmp) / "warm.ipynb")  # warm the page cache for both sides
            direct, job = [], []
            for i in range(args.runs):  # interleaved, so drift hits both sides alike
                direct.append(run_papermill(args.notebook, Path(tmp) / f"direct-{i}.ipynb"))
                job.append(run_job(engine, args.notebook, i))
        finally:
            engine.stop()
    d, j = statistics.median(direct), statistics.median(job)
    print(f"notebook: {args.notebook.name}, {args.runs} runs each, interleaved")
    print(f"papermill directly : median {d:.3f} s  (min {min(direct):.3f}, max {max(direct):.3f})")
    print(f"one-task OpenXPU job: median {j:.3f} s  (min {min(job):.3f}, max {max(job):.3f})")
    print(f"ratio job / papermill: {j / d:.3f}x  (goal <= 1.15x)")


if __name__ == "__main__":
    main()
