"""`openxpu sim` end to end through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from openxpu_server.sim.cli import SCHEDULERS, sim
from openxpu_server.sim.experiment import SCHEDULERS as EXPERIMENT_SCHEDULERS

LAYOUT = str(Path(__file__).resolve().parents[2] / "cluster" / "layouts" / "gpu-pod.yaml")
HAVE_HIVED = (Path(__file__).resolve().parents[2] / "openxpu_server" / "scheduler" / "hived" / "__init__.py").exists()


def run(args: list[str]):
    return CliRunner().invoke(sim, args, catch_exceptions=False)


@pytest.fixture
def trace(tmp_path) -> str:
    out = tmp_path / "t.csv"
    r = run(["gen-trace", "--out", str(out), "--layout", LAYOUT, "--jobs", "300", "--seed", "4"])
    assert r.exit_code == 0, r.output
    assert "wrote 300 jobs" in r.output
    return str(out)


def test_scheduler_names_agree():
    assert SCHEDULERS == EXPERIMENT_SCHEDULERS


def test_gen_trace_options(tmp_path):
    out = tmp_path / "t.csv"
    r = run(["gen-trace", "--out", str(out), "--jobs", "40", "--seed", "1", "--vcs", "a=3,b=1", "--gpus", "64"])
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 41 and lines[0].startswith("job_id,submit_time,vc,user,priority_class")
    assert {ln.split(",")[2] for ln in lines[1:]} <= {"a", "b"}
    r = run(["gen-trace", "--out", str(out), "--vcs", "a", "--layout", LAYOUT])
    assert r.exit_code == 2 and "not both" in r.output
    r = run(["gen-trace", "--out", str(out), "--vcs", "a=x"])
    assert r.exit_code == 2 and "must be a number" in r.output


def test_sim_writes_json_and_html(tmp_path, trace):
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    r = run(["--layout", LAYOUT, "--trace", trace, "--scheduler", "quota", "--out", str(out), "--html", str(html)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert set(report) == {"layout", "trace", "schedulers", "wall_s"}
    assert report["layout"]["gpus"] == 24  # gpu-pod without its pinned node
    assert list(report["schedulers"]) == ["quota"]
    q = report["schedulers"]["quota"]
    assert set(q) == {"overall", "vcs", "series", "examples"}
    for key in ("queue_delay_s", "jct_s", "utilization", "preemptions", "free_nodes_mean", "fragmentation", "sharing_anomaly"):
        assert key in q["overall"], key
    assert set(q["overall"]["queue_delay_s"]) == {"mean", "p50", "p95", "max"}
    assert set(q["vcs"]) == {"nlp", "vision", "research"}
    assert "sharing_anomaly" in q["vcs"]["nlp"] and "private_queue_delay_s" in q["vcs"]["nlp"]
    assert len(q["series"]["t_s"]) == len(q["series"]["utilization"]) == len(q["series"]["free_nodes"]) > 10
    text = html.read_text()
    assert "plotly" in text.lower() and "Plotly.newPlot" in text and "<script src=" not in text  # inlined: offline
    assert "Sharing anomaly" in text and "quota" in text
    assert "queue delay mean (h)" in r.output  # the summary table on stdout


def test_sim_quiet_fifo_without_anomaly(tmp_path, trace):
    out = tmp_path / "r.json"
    r = run(["--layout", LAYOUT, "--trace", trace, "--scheduler", "fifo", "--out", str(out), "--no-anomaly", "-q"])
    assert r.exit_code == 0, r.output
    fifo = json.loads(out.read_text())["schedulers"]["fifo"]
    assert "sharing_anomaly" not in fifo["overall"] and fifo["overall"]["finished"] == 300


def test_sim_errors(tmp_path, trace):
    r = run(["--layout", LAYOUT, "--trace", trace])
    assert r.exit_code == 2 and "missing --out" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("submit_time,vc,user,priority_class,task_count,gpus_per_task,duration\n0,nlp,u,prod,one,1,5\n")
    r = run(["--layout", LAYOUT, "--trace", str(bad), "--scheduler", "quota", "--out", str(tmp_path / "r.json")])
    assert r.exit_code == 1 and "line 2, column 'task_count': 'one' is not an integer" in r.output
    bad_layout = tmp_path / "bad.yaml"
    bad_layout.write_text("physicalCluster: {}\n")
    r = run(["--layout", str(bad_layout), "--trace", trace, "--scheduler", "quota", "--out", str(tmp_path / "r.json")])
    assert r.exit_code == 1 and "bad.yaml" in r.output


@pytest.mark.skipif(not HAVE_HIVED, reason="the HiveD scheduler package is not there yet")
def test_compare_runs_all_three(tmp_path, trace):
    out, html = tmp_path / "r.json", tmp_path / "r.html"
    r = run(["--layout", LAYOUT, "--trace", trace, "--compare", "--out", str(out), "--html", str(html)])
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert list(report["schedulers"]) == ["hived", "quota", "fifo"]
    assert all(s["overall"]["finished"] + s["overall"]["unfinished"] + s["overall"]["rejected"] == 300 for s in report["schedulers"].values())
    assert "hived" in html.read_text()
