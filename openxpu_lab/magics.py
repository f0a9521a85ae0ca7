"""`%pai_submit`, `%%pai_submit`, `%pai_jobs`, `%pai_logs`, `%pai_stop`, `%pai_quota`, `%pai_marketplace`.

Every argument is checked before anything is sent: a bad flag is one `UsageError` line. The
submit magics return the job handle, so `job = _` works on the next line. With `--wait`, the
tasks' logs stream into the cell; Ctrl-C stops waiting (not the job) and says how to stop it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .client import TERMINAL, Client, Job, OpenXPUApiError
from .convert import PRIORITIES, ConversionError, notebook_to_job, script_job, unique_name


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`k=v` pairs, values read as YAML (`lr=0.1` is a float, `name=abc` a string)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _check_int(flag: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag}: must be at least {minimum}, got {value}")


def rich_frontend(shell: Any) -> bool:
    """True in a Jupyter kernel (widgets render); False in a terminal IPython (text tables)."""
    try:
        from ipykernel.zmqshell import ZMQInteractiveShell
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return False
    return isinstance(shell, ZMQInteractiveShell)


@magics_class
class OpenXPUMagics(Magics):
    def __init__(self, shell: Any = None, client: Client | None = None):
        super().__init__(shell)
        self._client = client

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client()
            except Exception as e:
                raise UsageError(str(e)) from None
        return self._client

    # ------------------------------------------------------------------ submit
    @magic_arguments()
    @argument("file", nargs="?", help="A notebook (.ipynb) or a job (.yaml/.yml/.json) to submit (line form).")
    @argument("--name", help="Job name (default: the notebook's name, or 'cell'; made unique when taken).")
    @argument("--vc", help="Virtual cluster.")
    @argument("--instances", type=int, help="Tasks (default 1).")
    @argument("--gpu", type=int, help="GPUs per task.")
    @argument("--cpu", type=int, help="CPUs per task.")
    @argument("--memory", type=int, help="Memory per task, in MB.")
    @argument("--priority", choices=PRIORITIES, help="prod, test or oppo.")
    @argument("--image", help="Docker image to record (the local backend runs on the host).")
    @argument("-p", "--param", action="append", metavar="KEY=VALUE", help="A job/notebook parameter (repeatable).")
    @argument("--wait", action="store_true", help="Stream the logs into the cell until the job ends.")
    @argument("--bash", action="store_true", help="The cell is a bash script (default: Python).")
    @no_var_expand
    @line_cell_magic
    def pai_submit(self, line: str, cell: str | None = None) -> Job | None:
        """Run this cell (or FILE) as an OpenXPU job; returns the job handle (`job = _`)."""
        args = parse_argstring(self.pai_submit, line)
        for flag, value, minimum in (("--instances", args.instances, 1), ("--gpu", args.gpu, 0),
                                     ("--cpu", args.cpu, 1), ("--memory", args.memory, 1)):
            _check_int(flag, value, minimum)
        params = parse_params(args.param)
        if cell is not None and args.file:
            raise UsageError("give either a cell body or a FILE, not both")
        if cell is not None:
            if not cell.strip():
                raise UsageError("the cell is empty: nothing to run")
            job = script_job(
                cell, name=args.name or "cell", bash=args.bash, parameters=params, vc=args.vc,
                instances=args.instances or 1, gpu=args.gpu or 0, cpu=args.cpu or 1,
                memory_mb=args.memory or 1024, priority=args.priority, image=args.image or "python:3.11",
            )
            unique_default = args.name is None
        elif args.file:
            job, unique_default = self._file_job(args, params), True
        else:
            raise UsageError("%pai_submit needs a FILE (.ipynb, .yaml) on the line, or use %%pai_submit with a cell")
        try:
            if unique_default and job["name"] == "cell":
                job["name"] = unique_name("cell")
            handle = self.client.submit(job, unique=True)
        except OpenXPUApiError as e:
            raise UsageError(f"the server refused the job: {e.code}: {e.message}") from None
        print(f"openxpu: submitted {handle.key} ({self.client.url})", flush=True)
        if args.wait:
            self._wait(handle)
        return handle

    def _file_job(self, args: Any, params: dict[str, Any]) -> dict[str, Any]:
        path = Path(args.file).expanduser()
        if not path.is_file():
            raise UsageError(f"{args.file}: no such file")
        if args.bash:
            raise UsageError("--bash applies to a cell, not to a FILE")
        if path.suffix == ".ipynb":
            try:
                return notebook_to_job(
                    path, parameters=params, name=args.name, vc=args.vc, instances=args.instances, gpu=args.gpu,
                    cpu=args.cpu, memory_mb=args.memory, priority=args.priority, image=args.image,
                )
            except ConversionError as e:
                raise UsageError(f"{args.file}: {e}") from None
        if path.suffix in (".yaml", ".yml", ".json"):
            for flag in ("instances", "gpu", "cpu", "memory", "image", "priority", "vc"):
                if getattr(args, flag) is not None:
                    raise UsageError(f"--{flag} applies to cells and notebooks; edit the job file for a YAML job")
            try:
                data = yaml.safe_load(path.read_text())
            except yaml.YAMLError as e:
                raise UsageError(f"{args.file}: not valid YAML ({e})") from None
            if not isinstance(data, dict):
                raise UsageError(f"{args.file}: a job file is a YAML mapping")
            if params:
                data["parameters"] = {**(data.get("parameters") or {}), **params}
            if args.name:
                data["name"] = args.name
            return data
        raise UsageError(f"{args.file}: submit a notebook (.ipynb) or a job file (.yaml, .yml, .json)")

    def _wait(self, job: Job) -> None:
        try:
            for line in job.logs(follow=True):
                print(line, flush=True)
        except KeyboardInterrupt:
            print(f"openxpu: stopped waiting; {job.key} goes on. Stop it with %pai_stop {job.key} (or job.stop()).",
                  file=sys.stderr, flush=True)
            return
        d = job.detail()["jobStatus"]
        state = d["state"]
        if state == "SUCCEEDED":
            print(f"openxpu: {job.key} SUCCEEDED", flush=True)
        else:
            print(f"openxpu: {job.key} {state} (exit code {d.get('appExitCode')})", file=sys.stderr, flush=True)
            if d.get("appExitDiagnostics"):
                print(d["appExitDiagnostics"], file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ jobs
    @magic_arguments()
    @argument("--all", action="store_true", help="Every user's jobs (default: mine).")
    @argument("--limit", type=int, default=20)
    @argument("--text", action="store_true", help="A text table even where widgets render.")
    @line_magic
    def pai_jobs(self, line: str) -> Any:
        """My jobs, live (a JobMonitor widget; a text table in a terminal)."""
        args = parse_argstring(self.pai_jobs, line)
        _check_int("--limit", args.limit, 1)
        if rich_frontend(self.shell) and not args.text:
            from .widgets import JobMonitor

            return JobMonitor(self.client, all_users=args.all, limit=args.limit)
        from .widgets.text import jobs_table

        jobs = self.client.jobs(limit=args.limit) if args.all else self.client.my_jobs(limit=args.limit)
        print(jobs_table(jobs))
        return None

    @magic_arguments()
    @argument("job", help="user~name (or a name of mine).")
    @argument("-f", "--follow", action="store_true", help="Keep streaming until the job ends.")
    @argument("--task", help="Only this task, e.g. worker-0.")
    @line_magic
    def pai_logs(self, line: str) -> None:
        """Print a job's task logs (`-f` follows them; Ctrl-C stops following)."""
        args = parse_argstring(self.pai_logs, line)
        job = self.client.job(args.job)
        try:
            if args.follow:
                for text in job.logs(task=args.task, follow=True):
                    print(text, flush=True)
            else:
                print(job.logs(task=args.task))
        except KeyboardInterrupt:
            print(f"openxpu: stopped following {job.key}", file=sys.stderr)
        except OpenXPUApiError as e:
            raise UsageError(f"{e.code}: {e.message}") from None

    @magic_arguments()
    @argument("job", help="user~name (or a name of mine).")
    @line_magic
    def pai_stop(self, line: str) -> None:
        """Stop a job."""
        args = parse_argstring(self.pai_stop, line)
        job = self.client.job(args.job)
        try:
            job.stop()
        except OpenXPUApiError as e:
            raise UsageError(f"{e.code}: {e.message}") from None
        print(f"openxpu: stop requested for {job.key}")

    @magic_arguments()
    @argument("--text", action="store_true", help="A text table even where widgets render.")
    @line_magic
    def pai_quota(self, line: str) -> Any:
        """GPUs per virtual cluster: guaranteed, used, opportunistic, free, and mine."""
        args = parse_argstring(self.pai_quota, line)
        if rich_frontend(self.shell) and not args.text:
            from .widgets import QuotaView

            return QuotaView(self.client)
        from .widgets.quota import quota_rows
        from .widgets.text import quota_table

        rows = quota_rows(self.client.virtual_clusters(), self.client.jobs(state="RUNNING"), self.client.user)
        print(quota_table(rows))
        return None

    @magic_arguments()
    @argument("keyword", nargs="?", help="Search text.")
    @argument("--tag")
    @argument("--category")
    @argument("--text", action="store_true", help="A text table even where widgets render.")
    @line_magic
    def pai_marketplace(self, line: str) -> Any:
        """Browse the marketplace (a MarketplaceBrowser widget; a text table in a terminal)."""
        args = parse_argstring(self.pai_marketplace, line)
        if rich_frontend(self.shell) and not args.text:
            from .widgets import MarketplaceBrowser

            return MarketplaceBrowser(self.client, keyword=args.keyword or "", tag=args.tag, category=args.category)
        from .widgets.text import marketplace_table

        print(marketplace_table(self.client.marketplace(keyword=args.keyword, tag=args.tag, category=args.category)))
        return None


__all__ = ["OpenXPUMagics", "TERMINAL"]
