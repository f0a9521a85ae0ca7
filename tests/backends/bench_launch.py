"""Launch overhead of the local backend vs a bare Popen of the same script (prints, asserts nothing).

    python tests/backends/bench_launch.py [runs]

Measures, per run, the wall time from the call (`LocalBackend.launch` / `subprocess.Popen`) to
the first line of the script running (bash's $EPOCHREALTIME written to a file), and the time to a
recorded exit (`poll` seeing exit_code vs `Popen.wait`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from openxpu_server.backends.base import TaskLaunch  # noqa: E402
from openxpu_server.backends.local import LocalBackend  # noqa: E402

SCRIPT = 'printf "%s" "$EPOCHREALTIME" > started\necho hello\n'


def _wait_started(wd: str) -> float:
    path = os.path.join(wd, "started")
    while True:
        try:
            with open(path) as f:
                text = f.read()
            if text:
                return float(text)
        except FileNotFoundError:
            pass
        time.sleep(0.0002)


def bare(root: str, i: int) -> tuple[float, float]:
    wd = os.path.join(root, f"bare{i}")
    os.makedirs(wd)
    with open(os.path.join(wd, "script.sh"), "w") as f:
        f.write(SCRIPT)
    t0 = time.time()
    p = subprocess.Popen(["bash", "-e", "script.sh"], cwd=wd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, start_new_session=True)
    p.wait()
    t1 = time.time()
    return _wait_started(wd) - t0, t1 - t0


def local(backend: LocalBackend, root: str, i: int) -> tuple[float, float]:
    wd = os.path.join(root, f"local{i}")
    t0 = time.time()
    h = backend.launch(TaskLaunch("u~bench", "r", 0, 0, 0, SCRIPT, {}, wd))
    while backend.poll(h) is None:
        time.sleep(0.0005)
    t1 = time.time()
    return _wait_started(wd) - t0, t1 - t0


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    backend = LocalBackend()
    with tempfile.TemporaryDirectory() as root:
        for i in range(3):  # warm up (pyc, page cache)
            bare(root, 1000 + i)
            local(backend, root, 1000 + i)
        b = [bare(root, i) for i in range(runs)]
        loc = [local(backend, root, i) for i in range(runs)]
    for label, rows in (("bare Popen", b), ("LocalBackend", loc)):
        start = sorted(r[0] * 1000 for r in rows)
        end = sorted(r[1] * 1000 for r in rows)
        print(f"{label:13s} call->script start: median {statistics.median(start):6.2f} ms  "
              f"p90 {start[int(len(start) * 0.9)]:6.2f} ms | call->exit seen: median "
              f"{statistics.median(end):6.2f} ms")
    over = statistics.median(r[0] for r in loc) - statistics.median(r[0] for r in b)
    print(f"launcher overhead (median, to script start): {over * 1000:.2f} ms")


if __name__ == "__main__":
    main()
