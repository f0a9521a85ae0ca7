"""`POST convert/notebook`: a notebook under the server's root as a protocol v2 job, for the lab panel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml

from openxpu_server.protocol import parse_job


def write_notebook(root: Path, rel: str) -> None:
    params = nbformat.v4.new_code_cell("lr = 0.1\nepochs = 2")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell("print(lr * epochs)")])
    nb.metadata["openxpu"] = {"instances": 2, "cpu": 1}
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / rel)


async def test_a_notebook_becomes_a_job_that_the_server_accepts(api, openxpu_app):
    root = Path(openxpu_app.serverapp.root_dir)
    write_notebook(root, "work/train.ipynb")
    out = await api.json(
        "convert", "notebook", method="POST", body={"path": "work/train.ipynb", "parameters": {"lr": 0.5}, "gpu": 0}
    )
    assert out["path"] == "work/train.ipynb"
    job = yaml.safe_load(out["protocol"])
    assert job["parameters"] == {"lr": 0.5, "epochs": 2}  # the cell's defaults, then the override
    (role,) = job["taskRoles"].values()
    assert role["instances"] == 2 and role["resourcePerInstance"]["gpu"] == 0  # metadata, then body
    parse_job(out["protocol"])  # valid protocol v2
    submitted = await api.json("jobs", method="POST", body=out["protocol"], expect=202,
                               headers={"Content-Type": "text/yaml"})
    assert submitted["job"].endswith("~" + job["name"])


async def test_bad_requests_name_the_field(api, openxpu_app):
    root = Path(openxpu_app.serverapp.root_dir)
    write_notebook(root, "nb.ipynb")
    (root.parent / "outside.ipynb").write_text((root / "nb.ipynb").read_text())
    cases = [
        ({}, 400, "InvalidParametersError", "path: required"),
        ({"path": "nb.py"}, 400, "InvalidParametersError", "path: must name a .ipynb"),
        ({"path": "../outside.ipynb"}, 400, "InvalidParametersError", "outside the server's root"),
        ({"path": "missing.ipynb"}, 404, "NoFileError", "missing.ipynb"),
        ({"path": "nb.ipynb", "parameters": {"momentum": 1}}, 400, "InvalidParametersError", "'momentum'"),
        ({"path": "nb.ipynb", "instances": -1}, 400, "InvalidParametersError", "instances: must be an integer"),
        ({"path": "nb.ipynb", "parameters": [1]}, 400, "InvalidParametersError", "parameters: must be an object"),
    ]
    for body, status, code, text in cases:
        message = await api.error("convert", "notebook", method="POST", body=body, status=status, code=code)
        assert text in message, (body, message)
