"""Notebook -> job conversion (pure) and how the client finds its server."""

from __future__ import annotations

import json

import nbformat
import pytest
from labdata import DATA
from servers import TOKEN

from openxpu_lab import client as client_mod
from openxpu_lab.client import Client, DiscoveryError
from openxpu_lab.convert import (
    ConversionError,
    decode_notebook,
    notebook_of_job,
    notebook_parameters,
    notebook_to_job,
    script_job,
    sweep_points,
)
from openxpu_server.protocol import parse_job


def test_parameters_come_from_the_tagged_cell_and_overrides_are_checked():
    nb = nbformat.read(DATA / "train_model.ipynb", 4)
    assert notebook_parameters(nb) == {"x": 1, "lr": 0.05, "epochs": 20}
    job = notebook_to_job(DATA / "train_model.ipynb", parameters={"x": 3})
    assert job["parameters"] == {"x": 3, "lr": 0.05, "epochs": 20}
    spec = parse_job(job)  # a valid protocol v2 job, parameters rendered into the command
    assert '"x": 3' in spec.task_roles["worker"].commands[1]
    with pytest.raises(ConversionError, match="'lrr' is not in the notebook's parameters cell"):
        notebook_to_job(DATA / "train_model.ipynb", parameters={"lrr": 1})


def test_resources_from_metadata_then_flags(tmp_path):
    nb = nbformat.read(DATA / "train_model.ipynb", 4)
    nb.metadata["openxpu"] = {"instances": 3, "gpu": 1, "memoryMB": 2048, "vc": "lab", "image": "my/img:1"}
    path = tmp_path / "meta.ipynb"
    nbformat.write(nb, path)
    job = notebook_to_job(path)
    role = job["taskRoles"]["worker"]
    assert role["instances"] == 3 and role["resourcePerInstance"] == {"cpu": 1, "memoryMB": 2048, "gpu": 1}
    assert job["defaults"] == {"virtualCluster": "lab"} and job["prerequisites"][0]["uri"] == "my/img:1"
    job = notebook_to_job(path, instances=1, gpu=0, vc="default", priority="oppo")
    assert job["taskRoles"]["worker"]["instances"] == 1 and job["defaults"]["virtualCluster"] == "default"
    assert job["extras"]["hivedScheduler"] == {"jobPriorityClass": "oppo"}
    for kwargs, field in (({"instances": 0}, "instances"), ({"gpu": -1}, "gpu"), ({"priority": "now"}, "priority")):
        with pytest.raises(ConversionError, match=f"^{field}:"):
            notebook_to_job(path, **kwargs)
    with pytest.raises(ConversionError, match="no such notebook"):
        notebook_to_job(tmp_path / "missing.ipynb")
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(ConversionError, match="not a readable notebook"):
        notebook_to_job(tmp_path / "bad.ipynb")


def test_the_notebook_travels_inside_the_job_without_outputs():
    job = notebook_to_job(DATA / "train_model.ipynb")
    carried = notebook_of_job(job)
    original = nbformat.read(DATA / "train_model.ipynb", 4)
    assert [c.source for c in carried.cells] == [c.source for c in original.cells]
    assert all(not c.get("outputs") for c in carried.cells if c.cell_type == "code")
    payload = job["taskRoles"]["worker"]["commands"][0].split("\n", 1)[1].rsplit("\n", 1)[0]
    assert decode_notebook(payload).cells[1].source == original.cells[1].source
    assert "<%" not in payload  # parameter rendering can never touch the notebook


def test_script_job_and_sweep():
    job = script_job("print(x)", name="my cell!", parameters={"x": 1}, instances=2, priority="prod")
    assert job["name"] == "my-cell" and job["taskRoles"]["worker"]["instances"] == 2
    assert parse_job(job).task_roles["worker"].commands[-1] == "python3 -u cell.py"
    assert sweep_points({"lr": [0.1, 1], "n": [2]}) == [{"lr": 0.1, "n": 2}, {"lr": 1, "n": 2}]
    with pytest.raises(ConversionError, match="sweep.lr"):
        sweep_points({"lr": []})


def test_discovery_order_and_a_clear_error(monkeypatch, live_server):
    for var in ("OPENXPU_SERVER", "OPENXPU_TOKEN", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL",
                "JUPYTERHUB_SERVICE_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(client_mod, "_running_servers", lambda: [])
    with pytest.raises(DiscoveryError) as e:
        Client()
    message = str(e.value)
    for tried in ("OPENXPU_SERVER (not set)", "running Jupyter servers (none found)", "JUPYTERHUB_API_TOKEN not set"):
        assert tried in message, message
    # 3. a running Jupyter server's runtime file (the real format: url + token), probed for the API.
    monkeypatch.setattr(client_mod, "_running_servers", lambda: [
        {"url": "http://127.0.0.1:9/", "token": "x", "pid": 1},
        {"url": live_server.url + "/", "token": TOKEN, "pid": live_server.proc.pid, "root_dir": "/"},
    ])
    c = Client()
    assert c.url == live_server.url + "/" and c.source.startswith("running Jupyter server") and c.user == "alice"
    # 4. JupyterHub: the user's server URL and the hub token.
    monkeypatch.setattr(client_mod, "_running_servers", lambda: [])
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", TOKEN)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", live_server.url)
    assert Client().source == "JupyterHub"
    # 2. the environment wins over both; 1. explicit arguments win over everything.
    monkeypatch.setenv("OPENXPU_SERVER", "http://127.0.0.1:9")
    assert Client(probe=False).source == "OPENXPU_SERVER"
    assert Client(live_server.url, TOKEN).source == "explicit url"


def test_client_covers_the_jobs_api(client):
    job = client.submit(json.dumps({
        "protocolVersion": 2, "name": "api-tour", "type": "job", "parameters": {"n": 3},
        "prerequisites": [{"type": "dockerimage", "name": "i", "uri": "python:3.11"}],
        "taskRoles": {"worker": {"instances": 2, "dockerImage": "i",
                                 "resourcePerInstance": {"cpu": 1, "memoryMB": 64, "gpu": 0},
                                 "commands": ["for i in $(seq <% $parameters.n %>); do echo line $i; done"]}},
    }), parameters={"n": 4})
    assert job.wait(60) == "SUCCEEDED"
    lines = list(job.logs(follow=True))
    assert "[worker-0] line 4" in lines and "[worker-1] line 1" in lines
    assert client.logs(job.key, task="worker-1").splitlines() == [f"[worker-1] line {i}" for i in range(1, 5)]
    job.add_tag("keep")
    assert "keep" in client.detail(job.key)["tags"] and client.jobs(tagsContain="keep")[0]["name"] == "api-tour"
    job.remove_tag("keep")
    assert "n: 4" in job.config() and job.events()
    with pytest.raises(client_mod.OpenXPUApiError) as e:
        client.submit(job.config())  # same name again
    assert e.value.status == 409 and e.value.code == "ConflictJobError"
    assert client.submit(job.config(), unique=True).key.startswith("alice~api-tour-")


def test_terminal_ipython_gets_text_tables(client, capsys):
    """No kernel, no widgets: a plain InteractiveShell (what terminal IPython is) prints tables."""
    from IPython.core.interactiveshell import InteractiveShell

    from openxpu_lab.magics import OpenXPUMagics, rich_frontend

    shell = InteractiveShell.instance()
    assert not rich_frontend(shell)
    shell.register_magics(OpenXPUMagics(shell, client=client))
    client.submit(client.config("alice~api-tour"), unique=True).wait(60)
    capsys.readouterr()
    assert shell.run_line_magic("pai_jobs", "") is None
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["job", "state", "vc", "tasks", "gpus", "submitted", "exit"]
    assert "alice~api-tour" in out and "SUCCEEDED" in out
    shell.run_line_magic("pai_marketplace", "--tag pytorch")
    out = capsys.readouterr().out
    assert "pytorch-ddp-cpu" in out and "hello-distributed" not in out
    shell.run_line_magic("pai_quota", "")
    assert "default" in capsys.readouterr().out
