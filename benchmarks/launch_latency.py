"""Submit-to-running latency of a one-task job, against a bare `subprocess.Popen` of the same command.

Both sides run the same bash command, which writes the wall-clock time at which it starts. The
baseline measures Popen() -> command start; OpenXPU measures JobService.submit() -> command start
(validation, store insert, scheduler pass, port allocation, persisted launch, launcher start).
Runs alternate so machine noise hits both alike. Prints p50/p95 of each, and the overhead.

    python benchmarks/launch_latency.py [--runs 40] [--db-url postgresql://...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openxpu_server.backends.local import LocalBackend  # noqa: E402
from openxpu_server.engine import Engine  # noqa: E402
from openxpu_server.scheduler.fit import FitScheduler, Node  # noqa: E402


def command(stamp: Path) -> str:
    return f"date +%s.%N > {stamp}"


def wait_stamp(stamp: Path, timeout: float = 30) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            text = stamp.read_text().strip()
            if text:
                return float(text)
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    raise TimeoutError(stamp)


def bare(tmp: Path, i: int) -> float:
    stamp = tmp / f"bare-{i}"
    t0 = time.time()
    proc = subprocess.Popen(["bash", "-e", "-c", command(stamp)])
    started = wait_stamp(stamp)
    proc.wait()
    return started - t0


def openxpu(engine: Engine, tmp: Path, i: int) -> float:
    stamp = tmp / f"job-{i}"
    job = f"""
protocolVersion: 2
name: latency-{i}
type: job
prerequisites: [{{type: dockerimage, name: img, uri: busybox}}]
taskRoles:
  main:
    dockerImage: img
    resourcePerInstance: {{cpu: 1, memoryMB: 64, gpu: 0}}
    commands: ["{command(stamp)}"]
"""
    t0 = time.time()
    key = engine.jobs.submit("bench", job)
    started = wait_stamp(stamp)
    while engine.jobs.job_state(key)[0] not in ("SUCCEEDED", "FAILED"):
        engine.wait_for_change(0.05)
    return started - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--db-url", default=None, help="store URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        engine = Engine(
            db_url=args.db_url or f"sqlite:///{tmp / 'bench.sqlite'}",
            work_root=tmp / "jobs",
            backend=LocalBackend(),
            scheduler=FitScheduler([Node("box", "127.0.0.1", cpu=4, memory_mb=8192, gpus=[])]),
            poll_interval=0.5,
        )
        engine.start()
        try:
            openxpu(engine, tmp, -1), bare(tmp, -1)  # warm-up: imports, first SQLite pages
            b, o = [], []
            for i in range(args.runs):
                b.append(bare(tmp, i))
                o.append(openxpu(engine, tmp, i))
        finally:
            engine.stop()
    ms = 1000
    print(f"launch latency, {args.runs} runs each, store {'SQLite' if not args.db_url else args.db_url.split(':')[0]}")
    print(f"{'':28}{'p50 ms':>10}{'p95 ms':>10}{'mean ms':>10}")
    for name, v in (("bare subprocess.Popen", b), ("OpenXPU submit->running", o)):
        print(f"{name:28}{pct(v, .5) * ms:10.1f}{pct(v, .95) * ms:10.1f}{statistics.mean(v) * ms:10.1f}")
    print(
        f"overhead p50: {(pct(o, .5) - pct(b, .5)) * ms:.1f} ms (goal: within 100 ms); "
        f"ratio p50: {pct(o, .5) / pct(b, .5):.1f}x, p95: {pct(o, .95) / pct(b, .95):.1f}x"
    )


if __name__ == "__main__":
    main()
