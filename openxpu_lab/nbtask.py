"""Inside a task: run the job's notebook with papermill and keep the executed copy as an output.

    python3 -m openxpu_lab.nbtask notebook.ipynb.gz.b64 outputs/train.ipynb  <<< '{"lr": 0.1}'

stdin holds the job's parameters as JSON (rendered from `<% $parameters %>`). Cell outputs stream
to the task's log. When a cell fails, the executed notebook is still written (with papermill's
error banner) and the log ends with the cell's error, so the runtime's analysis names it in the
job's exit diagnostics; the exit status is 1.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .convert import decode_notebook


def _kernel_for(nb) -> str:
    """The notebook's kernel when this environment has it, else this Python's own kernel."""
    from jupyter_client.kernelspec import KernelSpecManager

    wanted = (nb.metadata.get("kernelspec") or {}).get("name")
    if wanted in (None, "python3"):
        return "python3"
    try:
        available = set(KernelSpecManager().find_kernel_specs())
    except Exception:
        available = set()
    if wanted and wanted in available:
        return wanted
    return "python3"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m openxpu_lab.nbtask NOTEBOOK.gz.b64 OUTPUT.ipynb  (parameters JSON on stdin)", file=sys.stderr)
        return 2
    source, output = Path(argv[0]), Path(argv[1])
    raw = sys.stdin.read().strip() if not sys.stdin.isatty() else ""
    try:
        parameters = json.loads(raw) if raw else {}
    except ValueError as e:
        print(f"openxpu: the job's parameters are not JSON ({e}): {raw[:200]!r}", file=sys.stderr)
        return 2
    if not isinstance(parameters, dict):
        parameters = {}
    nb = decode_notebook(source.read_text())
    output.parent.mkdir(parents=True, exist_ok=True)
    input_path = source.with_suffix("").with_suffix("")  # notebook.ipynb next to the payload
    input_path.write_text(json.dumps(nb))

    import warnings

    import papermill as pm
    from nbformat.validator import MissingIDFieldWarning

    warnings.filterwarnings("ignore", category=MissingIDFieldWarning)
    from papermill.exceptions import PapermillExecutionError

    task = f"{os.environ.get('PAI_CURRENT_TASK_ROLE_NAME', 'task')}-{os.environ.get('PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX', '0')}"
    print(f"openxpu: {task} runs {output.name} with parameters {json.dumps(parameters)}", flush=True)
    try:
        pm.execute_notebook(
            str(input_path),
            str(output),
            parameters=parameters,
            kernel_name=_kernel_for(nb),
            log_output=True,
            progress_bar=False,
            cwd=os.getcwd(),
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
        )
    except PapermillExecutionError as e:
        sys.stdout.flush()
        print(str(e), file=sys.stderr)
        error = f"{e.ename}: {e.evalue}" if e.evalue else e.ename
        print(f"openxpu: notebook cell In [{e.exec_count}] failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"openxpu: executed notebook written to outputs/{output.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
