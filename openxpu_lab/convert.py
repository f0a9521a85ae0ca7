"""Notebook -> protocol v2 job: every task runs the notebook with papermill.

- The `parameters`-tagged cell gives the job's `parameters:` (its literal defaults); `parameters=`
  overrides them, and papermill injects them in every task exactly as `papermill -p` does.
- Resources come from the notebook metadata `openxpu: {vc, instances, gpu, cpu, memoryMB, image,
  name, priority}`, then from the keyword arguments (the CLI's and the magic's flags).
- The notebook travels inside the job (gzip + base64 in a heredoc of the first command, outputs
  stripped), so the job is self-contained: any server runs it, and editing the notebook afterwards
  does not change a submitted job.
- Each task writes its executed notebook to `outputs/<notebook>.ipynb` in its work dir: the job's
  outputs (`Client.outputs`, `openxpu output JOB`). A failing cell fails the task with the cell's
  error as the last lines of its log, which the runtime's analysis turns into the exit diagnostics.
"""

from __future__ import annotations

import ast
import base64
import copy
import gzip
import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

DEFAULT_IMAGE = "python:3.11"
NAME_RE = re.compile(r"[^a-zA-Z0-9_-]+")
PRIORITIES = ("prod", "test", "oppo")


class ConversionError(ValueError):
    """The notebook or an option cannot make a job; the message names which."""


def read_notebook(source: str | os.PathLike | Mapping[str, Any]) -> tuple[nbformat.NotebookNode, str]:
    """(notebook, file stem) from a path or an in-memory notebook."""
    if isinstance(source, Mapping):
        nb = nbformat.from_dict(copy.deepcopy(dict(source)))
        stem = "notebook"
    else:
        path = Path(source)
        try:
            nb = nbformat.read(path, as_version=4)
        except FileNotFoundError:
            raise ConversionError(f"{path}: no such notebook") from None
        except Exception as e:  # nbformat raises several kinds for malformed JSON
            raise ConversionError(f"{path}: not a readable notebook ({e})") from None
        stem = path.stem
    return nb, stem


def parameter_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


def notebook_parameters(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The parameters cell's `name = literal` assignments (what papermill would override).

    Defaults that are not literals (e.g. `n = len(x)`) are left to the notebook itself."""
    cell = parameter_cell(nb)
    if cell is None:
        return {}
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as e:
        raise ConversionError(f"the parameters cell does not parse: {e.msg} (line {e.lineno})") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for t in targets:
            if isinstance(t, ast.Name):
                try:
                    out[t.id] = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    out.setdefault(t.id, _NOT_LITERAL)
    return out


class _NotLiteral:
    def __repr__(self) -> str:
        return "<expression>"


_NOT_LITERAL = _NotLiteral()


def job_name(base: str) -> str:
    """A protocol-valid job name from any text (`^[a-zA-Z0-9_-]+$`, at most 200 characters)."""
    name = NAME_RE.sub("-", base).strip("-") or "notebook"
    return name[:200]


def unique_name(base: str) -> str:
    """`base-YYYYmmdd-HHMMSS-xxxx`: a fresh job name for runs that may repeat."""
    return f"{job_name(base)[:180]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _strip_outputs(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def encode_notebook(nb: nbformat.NotebookNode) -> str:
    """gzip + base64, wrapped at 76 columns: compact, and never touched by `<% %>` rendering."""
    raw = gzip.compress(nbformat.writes(nb).encode("utf-8"), mtime=0)
    text = base64.b64encode(raw).decode("ascii")
    return "\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def decode_notebook(text: str) -> nbformat.NotebookNode:
    return nbformat.reads(gzip.decompress(base64.b64decode("".join(text.split()))).decode("utf-8"), as_version=4)


def _positive(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConversionError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def notebook_to_job(
    source: str | os.PathLike | Mapping[str, Any],
    *,
    parameters: Mapping[str, Any] | None = None,
    name: str | None = None,
    vc: str | None = None,
    instances: int | None = None,
    gpu: int | None = None,
    cpu: int | None = None,
    memory_mb: int | None = None,
    image: str | None = None,
    priority: str | None = None,
    retries: int | None = None,
    strict_parameters: bool = True,
) -> dict[str, Any]:
    """The protocol v2 job (a mapping) that runs `source` with papermill in each of its tasks."""
    nb, stem = read_notebook(source)
    meta = dict(nb.metadata.get("openxpu") or {})
    defaults = notebook_parameters(nb)
    overrides = dict(parameters or {})
    if strict_parameters and parameter_cell(nb) is not None:
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ConversionError(
                f"parameter {unknown[0]!r} is not in the notebook's parameters cell "
                f"(it has: {', '.join(defaults) or 'none'})"
            )
    params = {k: v for k, v in defaults.items() if v is not _NOT_LITERAL}
    params.update(overrides)
    try:
        json.dumps(params)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"parameters: must be JSON values ({e})") from None

    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else meta.get(key, default)

    n = _positive("instances", pick(instances, "instances", 1), 1)
    res = {
        "cpu": _positive("cpu", pick(cpu, "cpu", 1), 1),
        "memoryMB": _positive("memoryMB", pick(memory_mb, "memoryMB", 1024), 1),
        "gpu": _positive("gpu", pick(gpu, "gpu", 0), 0),
    }
    prio = pick(priority, "priority", None)
    if prio is not None and prio not in PRIORITIES:
        raise ConversionError(f"priority: one of {', '.join(PRIORITIES)}, got {prio!r}")
    tag = secrets.token_hex(4)
    output = f"outputs/{job_name(stem)}.ipynb"
    commands = [
        f"cat > notebook.ipynb.gz.b64 <<'OPENXPU_NOTEBOOK_{tag}'\n{encode_notebook(_strip_outputs(nb))}\nOPENXPU_NOTEBOOK_{tag}",
        f"python3 -m openxpu_lab.nbtask notebook.ipynb.gz.b64 {output} <<'OPENXPU_PARAMETERS_{tag}'\n"
        f"<% $parameters %>\nOPENXPU_PARAMETERS_{tag}",
    ]
    job: dict[str, Any] = {
        "protocolVersion": 2,
        "name": job_name(name or meta.get("name") or stem),
        "type": "job",
        "description": f"Notebook {stem}.ipynb run with papermill by each task (OpenXPU notebook job).",
        "parameters": params,
        "prerequisites": [{"type": "dockerimage", "name": "image", "uri": pick(image, "image", DEFAULT_IMAGE)}],
        "taskRoles": {
            "worker": {
                "instances": n,
                "dockerImage": "image",
                "resourcePerInstance": res,
                "commands": commands,
            }
        },
        "extras": {"openxpu": {"notebook": {"name": f"{stem}.ipynb", "output": output}}},
    }
    vc_name = pick(vc, "vc", None)
    if vc_name:
        job["defaults"] = {"virtualCluster": vc_name}
    if prio:
        job["extras"]["hivedScheduler"] = {"jobPriorityClass": prio}
    r = pick(retries, "retries", None)
    if r is not None:
        job["jobRetryCount"] = _positive("retries", r, 0)
    return job


def notebook_of_job(job: Mapping[str, Any]) -> nbformat.NotebookNode | None:
    """The notebook a notebook job carries (None for other jobs): to open a template as a notebook."""
    for role in (job.get("taskRoles") or {}).values():
        for command in role.get("commands") or []:
            if isinstance(command, str) and command.startswith("cat > notebook.ipynb.gz.b64 <<"):
                body = command.split("\n", 1)[1].rsplit("\n", 1)[0]
                return decode_notebook(body)
    return None


def script_job(
    body: str,
    *,
    name: str,
    bash: bool = False,
    parameters: Mapping[str, Any] | None = None,
    vc: str | None = None,
    instances: int = 1,
    gpu: int = 0,
    cpu: int = 1,
    memory_mb: int = 1024,
    priority: str | None = None,
    image: str = DEFAULT_IMAGE,
) -> dict[str, Any]:
    """A job whose tasks run `body` (a cell) as a Python script, or as bash with `bash=True`.

    Parameters are the job's `parameters:`: Python cells get them as variables, bash cells as
    `<% $parameters.key %>` references (and every cell as `parameters.json`); PAI_* are in the env."""
    tag = secrets.token_hex(4)
    script = "cell.sh" if bash else "cell.py"
    if bash:
        run = f"bash -e {script}"
    else:
        body = (
            "import json as _openxpu_json\n"
            "globals().update(_openxpu_json.load(open('parameters.json')))\n"
            "del _openxpu_json\n" + body
        )
        run = f"python3 -u {script}"
    commands = [
        f"cat > parameters.json <<'OPENXPU_PARAMETERS_{tag}'\n<% $parameters %>\nOPENXPU_PARAMETERS_{tag}",
        f"cat > {script} <<'OPENXPU_CELL_{tag}'\n{body.rstrip()}\nOPENXPU_CELL_{tag}",
        run,
    ]
    job: dict[str, Any] = {
        "protocolVersion": 2,
        "name": job_name(name),
        "type": "job",
        "description": "A notebook cell submitted with %%pai_submit.",
        "parameters": dict(parameters or {}),
        "prerequisites": [{"type": "dockerimage", "name": "image", "uri": image}],
        "taskRoles": {
            "worker": {
                "instances": instances,
                "dockerImage": "image",
                "resourcePerInstance": {"cpu": cpu, "memoryMB": memory_mb, "gpu": gpu},
                "commands": commands,
            }
        },
    }
    if vc:
        job["defaults"] = {"virtualCluster": vc}
    if priority:
        job["extras"] = {"hivedScheduler": {"jobPriorityClass": priority}}
    return job


def sweep_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a parameter grid, in order: {"lr": [1, 2], "n": [3]} -> 2 points."""
    import itertools

    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], list) or not grid[k]:
            raise ConversionError(f"sweep.{k}: must be a non-empty list of values")
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def main(argv: list[str] | None = None) -> int:
    """`python -m openxpu_lab.convert NOTEBOOK [-p k=v]... [--instances N] [--sweep k=v1,v2]`: print the job YAML."""
    import argparse

    import yaml

    ap = argparse.ArgumentParser(prog="python -m openxpu_lab.convert", description=main.__doc__)
    ap.add_argument("notebook")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--name")
    ap.add_argument("--instances", type=int)
    ap.add_argument("--cpu", type=int)
    ap.add_argument("--memory", type=int, dest="memory_mb")
    ap.add_argument("--gpu", type=int)
    ap.add_argument("--vc")
    ap.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="record a parameter grid in extras.openxpu.sweep (one job per point when used)")
    args = ap.parse_args(argv)

    def kv(text: str) -> tuple[str, str]:
        k, sep, v = text.partition("=")
        if not sep or not k:
            ap.error(f"{text!r}: expected KEY=VALUE")
        return k, v

    params = {k: yaml.safe_load(v) for k, v in map(kv, args.param)}
    job = notebook_to_job(
        args.notebook, parameters=params, name=args.name, instances=args.instances, cpu=args.cpu,
        memory_mb=args.memory_mb, gpu=args.gpu, vc=args.vc,
    )
    if args.sweep:
        grid = {k: [yaml.safe_load(x) for x in v.split(",")] for k, v in map(kv, args.sweep)}
        sweep_points(grid)
        job["extras"]["openxpu"]["sweep"] = grid
    print(to_yaml(job), end="")
    return 0


def to_yaml(job: Mapping[str, Any]) -> str:
    """The job as readable YAML: multi-line commands as `|` blocks."""
    from openxpu_server.protocol import dump_yaml

    return dump_yaml(job)


if __name__ == "__main__":
    raise SystemExit(main())
