"""`openxpu`: submit, follow and manage jobs, against a server or the embedded engine.

Where the CLI finds its engine, in order: `--server/--token` (or OPENXPU_SERVER/OPENXPU_TOKEN), a
running Jupyter server of this user that has the extension, else the embedded engine in this
process (SQLite in the Jupyter data dir, local processes; no server to start).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import click
import httpx
import yaml

from .errors import ConflictJobError, EngineLeaseError, OpenXPUError

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 2}


class CliError(click.ClickException):
    pass


# ---------------------------------------------------------------------------- connections
class Api(Protocol):
    where: str

    def submit(self, source: str, parameters: dict[str, Any], name: str | None = None) -> str: ...
    def list(self, query: dict[str, str]) -> Any: ...
    def detail(self, key: str) -> dict: ...
    def config(self, key: str) -> str: ...
    def stop(self, key: str) -> None: ...
    def events(self, key: str) -> list[dict]: ...
    def read_log(self, uri_parts: tuple, name: str, offset: int) -> tuple[bytes, int]: ...
    def close(self) -> None: ...


class RemoteApi:
    """REST v2 over HTTP with a Jupyter token (Authorization: token ...)."""

    def __init__(self, url: str, token: str | None):
        self.base = url.rstrip("/") + "/openxpu/api/v2"
        headers = {"Authorization": f"token {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=30)
        self.where = url

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, self.base + path, **kw)
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the OpenXPU server at {self.where}: {e}") from None
        if r.status_code >= 400:
            try:
                body = r.json()
                msg = f"{body.get('code')}: {body.get('message')}"
            except ValueError:
                msg = r.text[:500]
            raise CliError(f"{r.status_code} {msg}")
        return r

    def info(self) -> dict:
        return self._call("GET", "/info").json()

    def submit(self, source: str, parameters: dict[str, Any], name: str | None = None) -> str:
        if parameters or name:
            try:
                data = yaml.safe_load(source)
            except yaml.YAMLError as e:
                raise CliError(f"the job file is not valid YAML: {e}") from None
            if not isinstance(data, dict):
                raise CliError("the job file must be a YAML mapping to take -p parameters")
            if parameters:
                data["parameters"] = {**(data.get("parameters") or {}), **parameters}
            if name:
                data["name"] = name
            source = yaml.safe_dump(data, sort_keys=False)
        try:
            r = self.http.post(self.base + "/jobs", content=source.encode(), headers={"Content-Type": "text/yaml"})
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach the OpenXPU server at {self.where}: {e}") from None
        if r.status_code == 409:
            raise ConflictJobError(r.json().get("message", "job name already exists"))
        if r.status_code >= 400:
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            raise CliError(f"{r.status_code} {body.get('code')}: {body.get('message') or r.text[:500]}")
        return r.json()["job"]

    def list(self, query: dict[str, str]) -> Any:
        return self._call("GET", "/jobs", params=query).json()

    def detail(self, key: str) -> dict:
        return self._call("GET", f"/jobs/{key}").json()

    def config(self, key: str) -> str:
        return self._call("GET", f"/jobs/{key}/config").text

    def stop(self, key: str) -> None:
        self._call("PUT", f"/jobs/{key}/executionType", json={"value": "STOP"})

    def events(self, key: str) -> list[dict]:
        return self._call("GET", f"/jobs/{key}/events").json()["data"]

    def read_log(self, parts: tuple, name: str, offset: int) -> tuple[bytes, int]:
        key, attempt, role, index, ta = parts
        path = f"/jobs/{key}/attempts/{attempt}/taskRoles/{role}/taskIndex/{index}/attempts/{ta}/logs/{name}"
        try:
            r = self.http.get(self.base + path, params={"offset": offset})
        except httpx.HTTPError:
            return b"", offset
        if r.status_code != 200:
            return b"", offset
        return r.content, int(r.headers.get("X-OpenXPU-Log-Offset", offset + len(r.content)))

    def outputs(self, key: str) -> list[dict]:
        return self._call("GET", f"/jobs/{key}/outputs").json()["files"]

    def read_output(self, key: str, item: dict) -> bytes:
        return self._call("GET", _output_path(key, item)).content

    def close(self) -> None:
        self.http.close()


class EmbeddedApi:
    """The engine in this process; runs its loops while a command follows a job."""

    def __init__(self) -> None:
        from .app import OpenXPU

        app = OpenXPU()
        app.load_config_file()
        Path(app.data_dir).mkdir(parents=True, exist_ok=True)
        self.app = app
        self.engine = app.build_engine()
        self.jobs = self.engine.jobs
        self.username = app.username
        self.where = f"embedded engine (store {app.db_url})"
        self.loops_here = False
        self.loop_note = ""
        self._last_try = time.monotonic()

    def start_loops(self) -> None:
        if self.loops_here:
            return
        try:
            self.engine.start()
            self.loops_here = True
        except EngineLeaseError as e:
            self.loop_note = e.message

    def submit(self, source: str, parameters: dict[str, Any], name: str | None = None) -> str:
        return self.jobs.submit(self.username, source, parameters=parameters or None, name=name)

    def list(self, query: dict[str, str]) -> Any:
        from .services.jobs import parse_list_query

        return self.jobs.list(parse_list_query(query))

    def detail(self, key: str) -> dict:
        return self.jobs.detail(key)

    def config(self, key: str) -> str:
        return self.jobs.config(key)

    def stop(self, key: str) -> None:
        self.jobs.set_execution_type(key, "STOP")

    def events(self, key: str) -> list[dict]:
        return self.jobs.events(key)["data"]

    def read_log(self, parts: tuple, name: str, offset: int) -> tuple[bytes, int]:
        key, attempt, role, index, ta = parts
        try:
            path = self.jobs.log_path(key, attempt, role, index, ta, name)
        except OpenXPUError:
            return b"", offset
        with open(path, "rb") as f:
            if offset > os.fstat(f.fileno()).st_size:
                offset = 0  # rotated
            f.seek(offset)
            data = f.read()
        return data, offset + len(data)

    def outputs(self, key: str) -> list[dict]:
        from .services.outputs import OutputService

        return OutputService(self.jobs).list(key)

    def read_output(self, key: str, item: dict) -> bytes:
        from .services.outputs import OutputService

        return OutputService(self.jobs).path(
            key, item["jobAttemptId"], item["taskRoleName"], item["taskIndex"], item["taskAttemptId"], item["path"]
        ).read_bytes()

    def wait(self, timeout: float) -> None:
        if self.loops_here:
            self.engine.wait_for_change(timeout)
            return
        time.sleep(timeout)
        # Following a job another engine runs: take the loops over if that engine goes away.
        if time.monotonic() - self._last_try > 2:
            self._last_try = time.monotonic()
            self.start_loops()
            if self.loops_here:
                _say("the other engine is gone; this process runs the loops now", "yellow")

    def close(self) -> None:
        if self.loops_here:
            self.engine.stop()
        else:
            self.engine.store.dispose()


def _running_jupyter_server() -> tuple[str, str] | None:
    """A running Jupyter server of this user that answers the OpenXPU API, if any."""
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:
        return None
    for info in list_running_servers():
        url, token = info.get("url"), info.get("token") or ""
        try:
            r = httpx.get(
                url.rstrip("/") + "/openxpu/api/v2/info",
                headers={"Authorization": f"token {token}"} if token else {},
                timeout=1.5,
            )
        except httpx.HTTPError:
            continue
        if r.status_code == 200:
            return url, token
    return None


@contextmanager
def connected(server: str | None, token: str | None, embedded: bool) -> Iterator[Api]:
    """The command's connection, closed (and embedded loops stopped) however the command ends."""
    api = connect(server, token, embedded)
    try:
        yield api
    finally:
        api.close()


def connect(server: str | None, token: str | None, embedded: bool) -> Api:
    if embedded:
        return EmbeddedApi()
    server = server or os.environ.get("OPENXPU_SERVER")
    token = token or os.environ.get("OPENXPU_TOKEN")
    if server:
        return RemoteApi(server, token)
    found = _running_jupyter_server()
    if found:
        return RemoteApi(*found)
    return EmbeddedApi()


# ---------------------------------------------------------------------------- following
def _say(msg: str, color: str | None = None) -> None:
    click.echo(click.style(f"openxpu: {msg}", fg=color), err=True)


STATE_COLORS = {"WAITING": "yellow", "RUNNING": "blue", "SUCCEEDED": "green", "FAILED": "red", "STOPPED": "magenta"}


def _log_streams(detail: dict, key: str) -> Iterator[tuple[str, tuple]]:
    attempt = detail["jobStatus"]["attemptId"]
    for role, r in detail["taskRoles"].items():
        for t in r["taskStatuses"]:
            if t.get("containerId"):
                yield f"{role}-{t['taskIndex']}", (key, attempt, role, t["taskIndex"], t["attemptId"])


def follow(api: Api, key: str, *, logs: bool = True) -> str:
    """Print state changes, wait reasons and every task's log (prefixed) until the job ends."""
    offsets: dict[tuple, int] = {}
    partial: dict[tuple, bytes] = {}
    seen_events: set[str] = set()
    last_state = None
    drained_after_end = False
    while True:
        detail = api.detail(key)
        status = detail["jobStatus"]
        state = status["state"]
        if state != last_state:
            extra = ""
            if state == "WAITING" and status.get("waitReason"):
                extra = f" ({status['waitReason']})"
            _say(f"{key} is {state}{extra}", STATE_COLORS.get(state))
            last_state = state
        for ev in sorted(api.events(key), key=lambda e: int(e["uid"])):
            if ev["uid"] in seen_events:
                continue
            seen_events.add(ev["uid"])
            if ev["reason"] in ("Waiting", "Retry", "TaskRetry", "StopRequested", "AttemptCompleting"):
                _say(ev["message"], "yellow" if ev["type"] == "Warning" else None)
        got = False
        if logs:
            for prefix, parts in _log_streams(detail, key):
                data, offsets[parts] = api.read_log(parts, "all", offsets.get(parts, 0))
                if not data:
                    continue
                got = True
                buf = partial.get(parts, b"") + data
                *lines, rest = buf.split(b"\n")
                partial[parts] = rest
                for line in lines:
                    click.echo(f"[{prefix}] {line.decode('utf-8', 'replace')}")
        if state in TERMINAL:
            if got or not drained_after_end:
                drained_after_end = not got
                continue
            for parts, rest in partial.items():
                if rest:
                    click.echo(f"[{parts[2]}-{parts[3]}] {rest.decode('utf-8', 'replace')}")
            _report_end(detail)
            return state
        if isinstance(api, EmbeddedApi):
            api.wait(0.2)
        else:
            time.sleep(0.5)


def _report_end(detail: dict) -> None:
    s = detail["jobStatus"]
    state = s["state"]
    if state == "SUCCEEDED":
        _say(f"{detail['name']} SUCCEEDED", "green")
        return
    spec = s.get("appExitSpec") or {}
    _say(
        f"{detail['name']} {state}: exit code {s.get('appExitCode')} {spec.get('phrase', '')}"
        f" ({s.get('appExitTriggerMessage') or ''})",
        STATE_COLORS.get(state),
    )
    if state == "FAILED":
        if spec.get("reason"):
            _say(f"reason: {spec['reason']}")
        for sol in spec.get("solution") or []:
            _say(f"solution: {sol}")
        diag = s.get("appExitDiagnostics")
        if diag:
            click.echo(diag, err=True)


def _parse_params(params: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"{p!r}: expected key=value", param_hint="-p/--param")
        out[k] = yaml.safe_load(v) if v else ""
    return out


def _read_source(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text()
    except OSError as e:
        raise CliError(f"cannot read {file}: {e.strerror}") from None


def _output_path(key: str, item: dict) -> str:
    from urllib.parse import quote

    return (f"/jobs/{key}/attempts/{item['jobAttemptId']}/taskRoles/{item['taskRoleName']}/taskIndex/"
            f"{item['taskIndex']}/attempts/{item['taskAttemptId']}/outputs/{quote(item['path'])}")


notebook_opts = [
    click.option("--instances", type=click.IntRange(min=1), help="Notebook jobs: tasks that each run the notebook."),
    click.option("--gpu", type=click.IntRange(min=0), help="Notebook jobs: GPUs per task."),
    click.option("--cpu", type=click.IntRange(min=1), help="Notebook jobs: CPUs per task."),
    click.option("--memory", "memory_mb", type=click.IntRange(min=1), help="Notebook jobs: memory per task (MB)."),
    click.option("--vc", "nb_vc", help="Notebook jobs: virtual cluster."),
]


def with_notebook_opts(fn):
    for opt in reversed(notebook_opts):
        fn = opt(fn)
    return fn


def _job_source(file: str, parameters: dict[str, Any], nb: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(job text, parameters left to apply): a notebook becomes a papermill job with `-p` injected."""
    given = {k: v for k, v in nb.items() if v is not None}
    if not file.endswith(".ipynb"):
        if given:
            raise CliError(f"--{next(iter(given)).replace('nb_', '').replace('memory_mb', 'memory')} applies to notebooks; "
                           "edit the job file for a YAML job")
        return _read_source(file), parameters
    from openxpu_lab.convert import ConversionError, notebook_to_job

    try:
        job = notebook_to_job(file, parameters=parameters, vc=given.get("nb_vc"), instances=given.get("instances"),
                              gpu=given.get("gpu"), cpu=given.get("cpu"), memory_mb=given.get("memory_mb"))
    except ConversionError as e:
        raise CliError(f"{file}: {e}") from None
    return json.dumps(job), {}


def _wrap(fn):
    """Turn engine errors into one clean line and an exit status."""

    def inner(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except OpenXPUError as e:
            raise CliError(f"{e.code}: {e.message}") from None

    inner.__name__ = fn.__name__
    inner.__doc__ = fn.__doc__
    return inner


# ---------------------------------------------------------------------------- commands
server_opts = [
    click.option("--server", envvar="OPENXPU_SERVER", help="OpenXPU/Jupyter server URL (default: find one, else embedded)."),
    click.option("--token", envvar="OPENXPU_TOKEN", help="Token for --server."),
    click.option("--embedded", is_flag=True, help="Use the embedded engine even if a server runs."),
]


def with_server(fn):
    for opt in reversed(server_opts):
        fn = opt(fn)
    return fn


@click.group()
@click.version_option(package_name="openxpu")
def main() -> None:
    """OpenXPU: run OpenPAI protocol v2 jobs on this box or a shared OpenXPU server."""


def _run_and_follow(api: Api, key: str, follow_logs: bool) -> int:
    interrupted = False

    def on_int(signum, frame):
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True
        if isinstance(api, EmbeddedApi) and api.loops_here:
            _say(f"stopping {key} (Ctrl-C again to leave it running)", "yellow")
            api.stop(key)
        else:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, on_int)
    try:
        state = follow(api, key, logs=follow_logs)
    except KeyboardInterrupt:
        _say(f"stopped following {key}; it goes on. Stop it with: openxpu stop {key}", "yellow")
        return 130
    finally:
        signal.signal(signal.SIGINT, old)
    return EXIT_CODES.get(state, 1)


@main.command()
@click.argument("file")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a job parameter.")
@click.option("--follow/--no-follow", default=True, help="Stream state and logs until the job ends.")
@with_notebook_opts
@with_server
@_wrap
def run(file: str, params: tuple[str, ...], follow: bool, server: str | None, token: str | None, embedded: bool,
        **nb: Any) -> None:
    """Submit FILE (protocol v2 YAML/JSON, or a notebook run with papermill) and follow it; exit 0 when it succeeds."""
    source, job_params = _job_source(file, _parse_params(params), nb)
    with connected(server, token, embedded) as api:
        if isinstance(api, EmbeddedApi):
            api.start_loops()
            if api.loop_note:
                _say(f"{api.loop_note}; following the job it runs", "yellow")
        parameters = job_params
        try:
            key = api.submit(source, parameters)
        except ConflictJobError:
            # `run` means "run this file now": a name already used gets a fresh suffix.
            name = (yaml.safe_load(source) or {}).get("name", "job")
            new_name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
            _say(f"a job named {name} exists already; submitting this one as {new_name}", "yellow")
            key = api.submit(source, parameters, name=new_name)
        _say(f"submitted {key} to {api.where}")
        if not follow:
            if isinstance(api, EmbeddedApi) and api.loops_here:
                _say("--no-follow with the embedded engine: the job runs while an engine runs "
                     "(jupyter lab, jupyter openxpu, or openxpu logs -f)", "yellow")
            return
        code = _run_and_follow(api, key, True)
    sys.exit(code)


@main.command()
@click.argument("file")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE", help="Override a job parameter.")
@with_notebook_opts
@with_server
@_wrap
def submit(file: str, params: tuple[str, ...], server: str | None, token: str | None, embedded: bool, **nb: Any) -> None:
    """Submit FILE (a job, or a notebook run with papermill) and print the job id (user~name)."""
    source, job_params = _job_source(file, _parse_params(params), nb)
    with connected(server, token, embedded) as api:
        try:
            key = api.submit(source, job_params)
        except ConflictJobError:
            if not file.endswith(".ipynb"):
                raise
            from openxpu_lab.convert import unique_name  # a notebook is run again and again: a fresh name

            key = api.submit(source, job_params, name=unique_name(json.loads(source)["name"]))
        click.echo(key)
        if isinstance(api, EmbeddedApi):
            _say("no server runs: the job waits for an engine (jupyter lab, jupyter openxpu, "
                 f"or `openxpu logs -f {key}`)", "yellow")


@main.command(name="list")
@click.option("--user", "username", help="Only these users' jobs (comma list).")
@click.option("--vc", help="Only these virtual clusters (comma list).")
@click.option("--state", help="Only these states (comma list, e.g. RUNNING,WAITING).")
@click.option("--keyword", help="Substring of job name, user or VC.")
@click.option("--limit", default=20, show_default=True)
@click.option("--offset", default=0)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")
@with_server
@_wrap
def list_jobs(username, vc, state, keyword, limit, offset, as_json, server, token, embedded) -> None:
    """List jobs, newest first."""
    with connected(server, token, embedded) as api:
        query = {"limit": str(limit), "offset": str(offset), "withTotalCount": "true"}
        for k, v in (("username", username), ("vc", vc), ("state", state), ("keyword", keyword)):
            if v:
                query[k] = v
        result = api.list(query)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['totalCount']} job(s)")
    for col in ("job", "state", "vc", "tasks", "gpus", "retries", "submitted", "exit"):
        table.add_column(col, no_wrap=col in ("job", "submitted"))
    for j in result["data"]:
        table.add_row(
            f"{j['username']}~{j['name']}",
            f"[{STATE_COLORS.get(j['state'], 'white')}]{j['state']}[/]",
            j["virtualCluster"],
            str(j["totalTaskNumber"]),
            str(j["totalGpuNumber"]),
            str(j["retries"]),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["submissionTime"] / 1000)),
            "" if j["appExitCode"] is None else str(j["appExitCode"]),
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@main.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True)
@with_server
@_wrap
def show(job: str, as_json: bool, server, token, embedded) -> None:
    """Show a job's state, tasks and exit diagnostics."""
    with connected(server, token, embedded) as api:
        d = api.detail(job)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    s = d["jobStatus"]
    click.echo(f"{s['username']}~{d['name']}  {s['state']} ({s['subState']})  vc={s['virtualCluster']}  "
               f"attempt={s['attemptId']} retries={s['retries']}")
    images = s.get("dockerImages") or {}
    if images:
        click.echo("  images: " + ", ".join(f"{r}={i}" for r, i in images.items())
                   + " (recorded; the local backend runs commands on the host)")
    if s.get("waitReason"):
        click.echo(f"  waiting: {s['waitReason']}")
    if s.get("appExitCode") is not None:
        spec = s.get("appExitSpec") or {}
        click.echo(f"  exit: {s['appExitCode']} {spec.get('phrase', '')} [{spec.get('type', '')}] {s.get('appExitTriggerMessage') or ''}")
    for role, r in d["taskRoles"].items():
        for t in r["taskStatuses"]:
            ports = " ".join(f"{k}={v}" for k, v in (t.get("containerPorts") or {}).items())
            click.echo(f"  {role}-{t['taskIndex']}: {t['taskState']} exit={t.get('containerExitCode')} "
                       f"gpus={t.get('containerGpus') or '-'} {ports}")
    if s.get("appExitDiagnostics"):
        click.echo(s["appExitDiagnostics"])


@main.command()
@click.argument("job")
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep streaming until the job ends.")
@click.option("--task", help="Only this task, as role-index (e.g. worker-0).")
@click.option("--name", "log_name", default="all", type=click.Choice(["all", "stdout", "stderr"]))
@with_server
@_wrap
def logs(job: str, follow_: bool, task: str | None, log_name: str, server, token, embedded) -> None:
    """Print a job's task logs (prefixed by task); -f follows them."""
    with connected(server, token, embedded) as api:
        if follow_:
            if isinstance(api, EmbeddedApi):
                api.start_loops()
            sys.exit(_run_and_follow(api, job, True))
        d = api.detail(job)
        for prefix, parts in _log_streams(d, job):
            if task and prefix != task:
                continue
            data, _ = api.read_log(parts, log_name, 0)
            for line in data.decode("utf-8", "replace").splitlines():
                click.echo(f"[{prefix}] {line}")


@main.command()
@click.argument("job")
@with_server
@_wrap
def stop(job: str, server, token, embedded) -> None:
    """Stop a job (its tasks get SIGTERM, then SIGKILL after the grace period)."""
    with connected(server, token, embedded) as api:
        api.stop(job)
        _say(f"stop requested for {job}")


@main.command()
@click.argument("job")
@click.option("--task", help="Only this task, as role-index (e.g. worker-0).")
@click.option("-o", "--out", "dest", default=".", show_default=True, help="Folder to write JOB_NAME/ROLE-INDEX/PATH into.")
@click.option("--list", "list_only", is_flag=True, help="Only list the files.")
@with_server
@_wrap
def output(job: str, task: str | None, dest: str, list_only: bool, server, token, embedded) -> None:
    """Fetch a job's outputs (files its tasks wrote under outputs/, e.g. executed notebooks)."""
    with connected(server, token, embedded) as api:
        files = [f for f in api.outputs(job) if not task or f"{f['taskRoleName']}-{f['taskIndex']}" == task]
        if not files:
            _say(f"{job} has no outputs" + (f" for task {task}" if task else ""), "yellow")
            return
        for f in files:
            where = Path(dest) / job.split("~", 1)[-1] / f"{f['taskRoleName']}-{f['taskIndex']}" / f["path"]
            if list_only:
                click.echo(f"{f['taskRoleName']}-{f['taskIndex']}  {f['path']}  {f['size']} bytes")
                continue
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_bytes(api.read_output(job, f))
            click.echo(str(where))


@main.command()
@click.argument("job")
@with_server
@_wrap
def config(job: str, server, token, embedded) -> None:
    """Print the job's config as submitted (secrets masked)."""
    with connected(server, token, embedded) as api:
        click.echo(api.config(job), nl=False)


def _mount_simulator() -> None:
    from .sim.cli import sim

    main.add_command(sim)


_mount_simulator()
__import__("openxpu_server.cli_admin").cli_admin.mount(main)  # login, token, user, group, vc, storage

if __name__ == "__main__":
    main()
