"""`Client`: the whole OpenXPU REST API in Python, for notebooks, scripts and the magics.

It finds its server by itself (see `discover`), speaks REST only (never engine internals), and
turns every `{code, message}` error into an `OpenXPUApiError` carrying both.

    from openxpu_lab import Client
    c = Client()                                 # OPENXPU_SERVER/TOKEN, the lab's server, or the hub
    job = c.submit("examples/jobs/hello-distributed.yaml")
    job.wait(120); print(job.state, job.logs())
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
API_PREFIX = "openxpu/api/v2"


class OpenXPUApiError(Exception):
    """An error answer of the server: HTTP status, OpenPAI error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class DiscoveryError(RuntimeError):
    """No OpenXPU server could be found; the message lists every place that was tried."""


# ---------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class ServerAddress:
    url: str  # the Jupyter server's base URL, ending in "/"
    token: str | None
    source: str  # how it was found, for messages


def _probe(url: str, token: str | None, timeout: float = 2.0) -> str | None:
    """None when `url` answers the OpenXPU info route, else why not."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        r = httpx.get(url.rstrip("/") + f"/{API_PREFIX}/info", headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        return f"unreachable ({e.__class__.__name__})"
    if r.status_code == 200:
        return None
    return f"answered {r.status_code}"


def _running_servers() -> list[dict]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # pragma: no cover - jupyter_server is a dependency
        return []
    try:
        return list(list_running_servers())
    except OSError:
        return []


def discover(url: str | None = None, token: str | None = None, *, probe: bool = True) -> ServerAddress:
    """Where the server is, in this order:

    1. explicit `url` (and `token`);
    2. `OPENXPU_SERVER` / `OPENXPU_TOKEN`;
    3. the Jupyter server this kernel runs under (jupyter-server's running-server files; the one
       whose root contains the kernel's working directory first), if it answers the OpenXPU API;
    4. JupyterHub: `JUPYTERHUB_API_TOKEN` with the user's server URL (`JUPYTERHUB_SERVICE_URL`,
       else `JUPYTERHUB_BASE_URL` + `JUPYTERHUB_SERVICE_PREFIX`).
    """
    if url:
        return ServerAddress(_slash(url), token if token is not None else os.environ.get("OPENXPU_TOKEN"), "explicit url")
    tried: list[str] = []
    env_url = os.environ.get("OPENXPU_SERVER")
    if env_url:
        return ServerAddress(_slash(env_url), token or os.environ.get("OPENXPU_TOKEN"), "OPENXPU_SERVER")
    tried.append("OPENXPU_SERVER (not set)")
    servers = _running_servers()
    cwd = os.getcwd()

    def rank(info: dict) -> int:
        root = info.get("root_dir") or info.get("notebook_dir") or ""
        return 0 if root and (cwd + os.sep).startswith(root.rstrip(os.sep) + os.sep) else 1

    for info in sorted(servers, key=rank):
        srv_url, srv_token = info.get("url"), info.get("token") or None
        if not srv_url:
            continue
        why = _probe(srv_url, srv_token) if probe else None
        if why is None:
            return ServerAddress(_slash(srv_url), srv_token, f"running Jupyter server (pid {info.get('pid')})")
        tried.append(f"Jupyter server {srv_url} ({why})")
    if not servers:
        tried.append("running Jupyter servers (none found)")
    hub_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if hub_token:
        hub_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        if not hub_url and os.environ.get("JUPYTERHUB_SERVICE_PREFIX"):
            host = os.environ.get("JUPYTERHUB_HOST") or "http://127.0.0.1:8000"
            hub_url = host.rstrip("/") + os.environ["JUPYTERHUB_SERVICE_PREFIX"]
        if hub_url:
            why = _probe(hub_url, hub_token) if probe else None
            if why is None:
                return ServerAddress(_slash(hub_url), hub_token, "JupyterHub")
            tried.append(f"JupyterHub server {hub_url} ({why})")
        else:
            tried.append("JupyterHub (JUPYTERHUB_API_TOKEN set but no JUPYTERHUB_SERVICE_URL/_PREFIX)")
    else:
        tried.append("JupyterHub (JUPYTERHUB_API_TOKEN not set)")
    raise DiscoveryError(
        "no OpenXPU server found; tried: " + "; ".join(tried)
        + ". Pass Client(url=..., token=...) or set OPENXPU_SERVER and OPENXPU_TOKEN."
    )


def _slash(url: str) -> str:
    return url.rstrip("/") + "/"


# ---------------------------------------------------------------------------- jobs
@dataclass
class TaskInfo:
    role: str
    index: int
    state: str
    exit_code: int | None
    job_attempt: int
    task_attempt: int | None
    diagnostics: str | None

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class Job:
    """A handle on one job (`user~name`); every property asks the server afresh."""

    def __init__(self, client: Client, key: str):
        self.client = client
        self.key = key

    def __repr__(self) -> str:
        try:
            state = self.state
        except Exception:  # a repr must not raise
            state = "?"
        return f"<openxpu Job {self.key} {state}>"

    def _repr_html_(self) -> str:
        from html import escape

        d = self.detail()
        s = d["jobStatus"]
        rows = "".join(
            f"<tr><td>{escape(t.name)}</td><td>{escape(t.state)}</td><td>{'' if t.exit_code is None else t.exit_code}</td></tr>"
            for t in self._tasks(d)
        )
        return (
            f"<b>{escape(self.key)}</b> <code>{escape(s['state'])}</code> vc={escape(s['virtualCluster'])}"
            f"<table><tr><th>task</th><th>state</th><th>exit</th></tr>{rows}</table>"
        )

    @property
    def name(self) -> str:
        return self.key.split("~", 1)[1]

    def detail(self) -> dict:
        return self.client.detail(self.key)

    @property
    def state(self) -> str:
        return self.detail()["jobStatus"]["state"]

    @property
    def exit_code(self) -> int | None:
        return self.detail()["jobStatus"]["appExitCode"]

    @property
    def exit_diagnostics(self) -> str | None:
        """The failed attempt's diagnostics (the runtime's analysis of the failing task's log)."""
        return self.detail()["jobStatus"].get("appExitDiagnostics")

    @property
    def tasks(self) -> list[TaskInfo]:
        return self._tasks(self.detail())

    @staticmethod
    def _tasks(d: dict) -> list[TaskInfo]:
        attempt = d["jobStatus"]["attemptId"]
        return [
            TaskInfo(
                role,
                t["taskIndex"],
                t["taskState"],
                t.get("containerExitCode"),
                attempt,
                t.get("attemptId") if t.get("containerId") else None,
                t.get("containerExitDiagnostics"),
            )
            for role, r in d["taskRoles"].items()
            for t in r["taskStatuses"]
        ]

    def wait(self, timeout: float | None = None, *, poll: float = 0.3) -> str:
        """Block until the job ends (or `timeout` seconds); returns the state. Ctrl-C interrupts."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self.state
            if state in TERMINAL:
                return state
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self.key} is still {state} after {timeout}s")
            time.sleep(poll)

    def logs(self, task: str | None = None, *, name: str = "all", follow: bool = False) -> str | Iterator[str]:
        """The tasks' logs, each line prefixed `[role-index]`; `follow=True` yields lines until the end."""
        if follow:
            return self.client.follow_logs(self.key, task=task, name=name)
        return self.client.logs(self.key, task=task, name=name)

    def stop(self) -> None:
        self.client.stop(self.key)

    def config(self) -> str:
        return self.client.config(self.key)

    def events(self) -> list[dict]:
        return self.client.events(self.key)

    def outputs(self) -> list[dict]:
        return self.client.outputs(self.key)

    def download_outputs(self, dest: str | os.PathLike = ".", *, task: str | None = None) -> list[Path]:
        return self.client.download_outputs(self.key, dest, task=task)

    def add_tag(self, tag: str) -> None:
        self.client.add_tag(self.key, tag)

    def remove_tag(self, tag: str) -> None:
        self.client.remove_tag(self.key, tag)


# ---------------------------------------------------------------------------- client
class Client:
    """REST v2 client. `Client()` discovers the server; `Client(url, token)` is explicit."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 30, probe: bool = True):
        addr = discover(url, token, probe=probe)
        self.url, self.token, self.source = addr.url, addr.token, addr.source
        self.base = self.url + API_PREFIX
        headers = {"Authorization": f"token {addr.token}"} if addr.token else {}
        self.http = httpx.Client(headers=headers, timeout=timeout)
        self._user: str | None = None

    def __repr__(self) -> str:
        return f"<openxpu Client {self.url} ({self.source})>"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request under `openxpu/api/v2/`; error answers raise `OpenXPUApiError`."""
        try:
            r = self.http.request(method, f"{self.base}/{path.lstrip('/')}", **kw)
        except httpx.HTTPError as e:
            raise OpenXPUApiError(0, "ConnectionError", f"cannot reach {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                body = r.json()
                code, message = body.get("code", "UnknownError"), body.get("message", r.text)
            except ValueError:
                code, message = "UnknownError", r.text[:500]
            raise OpenXPUApiError(r.status_code, code, message)
        return r

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- info --------------------------------------------------------------------------------
    def info(self) -> dict:
        return self._json("GET", "info")

    @property
    def user(self) -> str:
        """The OpenXPU user this client acts as."""
        if self._user is None:
            self._user = self.info().get("user") or ""
        return self._user

    # -- jobs --------------------------------------------------------------------------------
    def submit(
        self,
        job: str | os.PathLike | Mapping[str, Any] | Any,
        *,
        parameters: Mapping[str, Any] | None = None,
        name: str | None = None,
        unique: bool = False,
    ) -> Job:
        """Submit a job: YAML/JSON text, a path to a YAML file or a notebook, a mapping, or any object
        with `to_dict()`/`to_yaml()` (a protocol object). `parameters` override its `parameters:`;
        `unique=True` submits under a fresh name (`name-<time>-<hex>`) when the name is taken."""
        if isinstance(job, Path) or (isinstance(job, str) and "\n" not in job and job.endswith((".yaml", ".yml", ".json", ".ipynb"))):
            path = Path(job)
            if path.suffix == ".ipynb":
                return self.submit_notebook(path, parameters=parameters, name=name)
            job = path.read_text()
        if hasattr(job, "to_dict"):
            job = job.to_dict()
        elif hasattr(job, "to_yaml"):
            job = job.to_yaml()
        if isinstance(job, Mapping):
            data = dict(job)
        else:
            if parameters or name:
                data = yaml.safe_load(job)
                if not isinstance(data, dict):
                    raise ValueError("the job must be a YAML mapping to take parameters or a name")
            else:
                data = None
        if data is not None:
            if parameters:
                data["parameters"] = {**(data.get("parameters") or {}), **dict(parameters)}
            if name:
                data["name"] = name
            body, ctype = json.dumps(data).encode(), "application/json"
        else:
            body, ctype = str(job).encode(), "text/yaml"
        try:
            reply = self._json("POST", "jobs", content=body, headers={"Content-Type": ctype})
        except OpenXPUApiError as e:
            if not (unique and e.code == "ConflictJobError"):
                raise
            from .convert import unique_name

            data = data if data is not None else yaml.safe_load(job)
            return self.submit(data, name=unique_name(str(data.get("name") or "job")))
        return Job(self, reply["job"])

    def submit_notebook(self, path: str | os.PathLike, *, parameters: Mapping[str, Any] | None = None, **options: Any) -> Job:
        """Run a notebook as a job (papermill in every task); options as `convert.notebook_to_job`."""
        from .convert import notebook_to_job

        return self.submit(notebook_to_job(path, parameters=parameters, **options), unique=True)

    def job(self, key: str) -> Job:
        """A handle on `user~name` (or `name`, taken as one of this user's jobs)."""
        if "~" not in key:
            key = f"{self.user}~{key}"
        return Job(self, key)

    def jobs(self, **filters: Any) -> list[dict]:
        """Job summaries, newest first. Filters as the REST API: username, vc, state, keyword,
        tagsContain, tagsNotContain, jobPriority, offset, limit, order (lists may be given as lists)."""
        params = {k: ",".join(map(str, v)) if isinstance(v, (list, tuple, set)) else str(v) for k, v in filters.items() if v is not None}
        params.pop("withTotalCount", None)
        return self._json("GET", "jobs", params=params)

    def my_jobs(self, **filters: Any) -> list[dict]:
        return self.jobs(username=self.user, **filters)

    def detail(self, key: str, attempt: int | None = None) -> dict:
        return self._json("GET", f"jobs/{key}" + (f"/attempts/{attempt}" if attempt is not None else ""))

    def config(self, key: str) -> str:
        return self.request("GET", f"jobs/{key}/config").text

    def events(self, key: str, type: str | None = None) -> list[dict]:
        return self._json("GET", f"jobs/{key}/events", params={"type": type} if type else None)["data"]

    def stop(self, key: str) -> None:
        self.request("PUT", f"jobs/{key}/executionType", json={"value": "STOP"})

    def add_tag(self, key: str, tag: str) -> None:
        self.request("PUT", f"jobs/{key}/tag", json={"value": tag})

    def remove_tag(self, key: str, tag: str) -> None:
        self.request("DELETE", f"jobs/{key}/tag", json={"value": tag})

    def task_attempts(self, key: str, role: str, index: int, attempt: int = 0) -> dict:
        return self._json("GET", f"jobs/{key}/attempts/{attempt}/taskRoles/{role}/taskIndex/{index}/attempts")

    # -- logs --------------------------------------------------------------------------------
    @staticmethod
    def _log_path(key: str, t: TaskInfo, name: str) -> str:
        return (
            f"jobs/{key}/attempts/{t.job_attempt}/taskRoles/{t.role}/taskIndex/{t.index}"
            f"/attempts/{t.task_attempt}/logs/{name}"
        )

    def read_log(self, key: str, task: TaskInfo, name: str = "all", offset: int = 0) -> tuple[str, int]:
        """(text from byte `offset`, next offset) of one task's log; empty before it starts."""
        if task.task_attempt is None:
            return "", offset
        try:
            r = self.request("GET", self._log_path(key, task, name), params={"offset": offset})
        except OpenXPUApiError as e:
            if e.status == 404:
                return "", offset
            raise
        return r.content.decode("utf-8", "replace"), int(r.headers.get("X-OpenXPU-Log-Offset", offset + len(r.content)))

    def logs(self, key: str, *, task: str | None = None, name: str = "all", tail: bool = False) -> str:
        """Every started task's log (`task="worker-0"` for one), lines prefixed `[role-index]`."""
        lines = []
        for t in Job._tasks(self.detail(key)):
            if task and t.name != task:
                continue
            if t.task_attempt is None:
                continue
            params = {"tail-mode": "true"} if tail else None
            try:
                text = self.request("GET", self._log_path(key, t, name), params=params).text
            except OpenXPUApiError as e:
                if e.status == 404:
                    continue
                raise
            lines += [f"[{t.name}] {line}" for line in text.splitlines()]
        return "\n".join(lines)

    def follow_logs(self, key: str, *, task: str | None = None, name: str = "all", poll: float = 0.3) -> Iterator[str]:
        """Yield `[role-index] line` as tasks write them, until the job ends and the logs are drained."""
        offsets: dict[tuple, int] = {}
        partial: dict[tuple, str] = {}
        drained = False
        while True:
            d = self.detail(key)
            state = d["jobStatus"]["state"]
            got = False
            for t in Job._tasks(d):
                if (task and t.name != task) or t.task_attempt is None:
                    continue
                ident = (t.job_attempt, t.role, t.index, t.task_attempt)
                text, offsets[ident] = self.read_log(key, t, name, offsets.get(ident, 0))
                if not text:
                    continue
                got = True
                *lines, rest = (partial.get(ident, "") + text).split("\n")
                partial[ident] = rest
                for line in lines:
                    yield f"[{t.name}] {line}"
            if state in TERMINAL:
                if got or not drained:
                    drained = not got
                    continue
                for (_, role, index, _), rest in partial.items():
                    if rest:
                        yield f"[{role}-{index}] {rest}"
                return
            time.sleep(poll)

    # -- outputs -----------------------------------------------------------------------------
    def outputs(self, key: str, attempt: int | None = None) -> list[dict]:
        """Files the job's tasks left in their `outputs/` folders (executed notebooks, event files...)."""
        params = {"attempt": str(attempt)} if attempt is not None else None
        return self._json("GET", f"jobs/{key}/outputs", params=params)["files"]

    def read_output(self, key: str, item: Mapping[str, Any]) -> bytes:
        """The bytes of one entry of `outputs()`."""
        path = (
            f"jobs/{key}/attempts/{item['jobAttemptId']}/taskRoles/{item['taskRoleName']}/taskIndex/"
            f"{item['taskIndex']}/attempts/{item['taskAttemptId']}/outputs/{item['path']}"
        )
        return self.request("GET", path).content

    def download_outputs(self, key: str, dest: str | os.PathLike = ".", *, task: str | None = None) -> list[Path]:
        """Copy the outputs to `dest/<job name>/<role-index>/<path>`; returns the written files."""
        written = []
        for item in self.outputs(key):
            tname = f"{item['taskRoleName']}-{item['taskIndex']}"
            if task and tname != task:
                continue
            target = Path(dest) / key.split("~", 1)[1] / tname / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_output(key, item))
            written.append(target)
        return written

    # -- cluster -----------------------------------------------------------------------------
    def virtual_clusters(self) -> dict[str, dict]:
        """OpenPAI's `GET virtual-clusters`: VC name -> {resourcesGuaranteed, resourcesUsed, resourcesTotal, ...}.

        An empty dict when the server has no virtual-cluster API (the quota view then works from jobs alone).
        """
        try:
            return self._json("GET", "virtual-clusters")
        except OpenXPUApiError as e:
            if e.status == 404 and e.code == "NoApiError":
                return {}
            raise

    # -- marketplace -------------------------------------------------------------------------
    def marketplace(self, **filters: Any) -> list[dict]:
        """Templates I may see. Filters: keyword, tag, category, author, name, visibility, starred (bool)."""
        params = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in filters.items() if v is not None}
        return self._json("GET", "marketplace/items", params=params)["items"]

    def marketplace_item(self, item_id: str) -> dict:
        return self._json("GET", f"marketplace/items/{item_id}")

    def create_item(self, item: Mapping[str, Any]) -> dict:
        return self._json("POST", "marketplace/items", json=dict(item))

    def update_item(self, item_id: str, changes: Mapping[str, Any]) -> dict:
        return self._json("PUT", f"marketplace/items/{item_id}", json=dict(changes))

    def delete_item(self, item_id: str) -> None:
        self.request("DELETE", f"marketplace/items/{item_id}")

    def star_item(self, item_id: str, starred: bool = True) -> dict:
        return self._json("PUT" if starred else "DELETE", f"marketplace/items/{item_id}/star")

    def use_item(
        self, item_id: str, *, parameters: Mapping[str, Any] | None = None, name: str | None = None, submit: bool = True
    ) -> Job | list[Job] | str:
        """Count a use of a template and submit its protocol under a fresh name (`submit=False`:
        return the YAML). A template with a sweep grid (`extras.openxpu.sweep`) submits one job per
        point of the grid and returns the list."""
        from .convert import sweep_points, unique_name

        protocol = self._json("POST", f"marketplace/items/{item_id}/use")["protocol"]
        if not submit:
            return protocol
        data = yaml.safe_load(protocol)
        base = name or str(data.get("name") or "template")
        grid = ((data.get("extras") or {}).get("openxpu") or {}).get("sweep")
        if grid:
            jobs = []
            for i, point in enumerate(sweep_points(grid)):
                point = {**point, **dict(parameters or {})}
                jobs.append(self.submit(data, parameters=point, name=unique_name(f"{base}-{i}"), unique=True))
            return jobs
        return self.submit(data, parameters=parameters, name=name or unique_name(base), unique=True)

    def marketplace_tags(self) -> list[str]:
        return self._json("GET", "marketplace/tags")

    def marketplace_categories(self) -> list[str]:
        return self._json("GET", "marketplace/categories")
