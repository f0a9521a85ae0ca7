"""Task outputs: the files a task leaves in `outputs/` of its work dir, readable after it ends.

The contract for any job: write results (an executed notebook, TensorBoard event files, a model)
under `$PAI_WORK_DIR/outputs/`; the local backend keeps every task attempt's work dir, and these
files are listed and served by `GET jobs/{job}/outputs` and the per-task-attempt outputs route.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidParametersError, NoTaskError
from .jobs import JobService

OUTPUT_DIR = "outputs"
MAX_FILES = 1000


class OutputService:
    def __init__(self, jobs: JobService):
        self.jobs = jobs

    def _work_dirs(self, key: str, attempt: int | None) -> tuple[int, dict[tuple[str, int], tuple[int, str]]]:
        """(job attempt, {(role, index): (latest task attempt, work dir)}) of a job attempt."""
        current = self.jobs.detail(key)["jobStatus"]["attemptId"]  # raises NoJobError
        if attempt is None:
            attempt = current
        elif not 0 <= attempt <= current:
            raise InvalidParametersError(f"attempt: job {key} has attempts 0..{current}, got {attempt}")
        latest: dict[tuple[str, int], tuple[int, str]] = {}
        for role, index, job_attempt, task_attempt, work_dir in self.jobs.running_tasks(key):
            if job_attempt != attempt:
                continue
            if (role, index) not in latest or task_attempt > latest[(role, index)][0]:
                latest[(role, index)] = (task_attempt, work_dir)
        return attempt, latest

    def list(self, key: str, attempt: int | None = None) -> list[dict]:
        """Every output file of the attempt's tasks (their latest task attempts), sorted."""
        attempt, dirs = self._work_dirs(key, attempt)
        files: list[dict] = []
        for (role, index), (task_attempt, work_dir) in sorted(dirs.items()):
            root = Path(work_dir) / OUTPUT_DIR
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for fname in sorted(filenames):
                    full = Path(dirpath) / fname
                    if full.is_symlink() or not full.is_file():
                        continue
                    st = full.stat()
                    files.append(
                        {
                            "taskRoleName": role,
                            "taskIndex": index,
                            "jobAttemptId": attempt,
                            "taskAttemptId": task_attempt,
                            "path": full.relative_to(root).as_posix(),
                            "size": st.st_size,
                            "modifiedTime": int(st.st_mtime * 1000),
                        }
                    )
                    if len(files) >= MAX_FILES:
                        return files
        return files

    def path(self, key: str, attempt: int, role: str, index: int, task_attempt: int, rel: str) -> Path:
        """The file `rel` under one task attempt's outputs; 400 for paths leaving it, 404 if absent."""
        parts = rel.split("/")
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidParametersError(f"path: {rel!r} must be a relative path inside the task's outputs folder")
        work_dir = None
        for r, i, a, ta, wd in self.jobs.running_tasks(key):
            if (r, i, a, ta) == (role, index, attempt, task_attempt):
                work_dir = wd
        if work_dir is None:
            raise NoTaskError(f"Job {key} has no started task {role}[{index}] attempt {task_attempt} in job attempt {attempt}.")
        root = (Path(work_dir) / OUTPUT_DIR).resolve()
        full = (root / rel).resolve()
        if not full.is_relative_to(root):
            raise InvalidParametersError(f"path: {rel!r} leaves the task's outputs folder")
        if not full.is_file():
            raise NoTaskError(f"Task {role}[{index}] of {key} has no output {rel!r}.")
        return full
