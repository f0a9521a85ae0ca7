"""`%pai_submit` and friends in a real kernel (jupyter_client) against a live `jupyter openxpu` server."""

from __future__ import annotations

import shutil
import time

from labdata import DATA, result_text, stream_text


def job_count(live_server) -> int:
    return len(live_server.http.get(live_server.base + "/jobs").json())


def test_cell_runs_as_two_tasks_and_their_output_appears_in_the_cell(kernel, live_server):
    reply, out = kernel.run(
        "%%pai_submit --instances 2 --wait -p x=7\n"
        "import os\n"
        "i = os.environ['PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX']\n"
        "print(f\"hello from task {i} of {os.environ['PAI_JOB_TASK_COUNT']}, x = {x}, job {os.environ['PAI_JOB_NAME']}\")\n"
    )
    text = stream_text(out)
    assert reply["status"] == "ok", out
    assert "[worker-0] hello from task 0 of 2, x = 7, job alice~cell-" in text, text
    assert "[worker-1] hello from task 1 of 2, x = 7, job alice~cell-" in text, text
    assert "SUCCEEDED" in text
    # The handle is the cell's value: `job = _` works.
    reply, out = kernel.run("job = _\nprint(job.state, len(job.tasks), sorted(t.state for t in job.tasks))")
    assert reply["status"] == "ok", out
    assert "SUCCEEDED 2 ['SUCCEEDED', 'SUCCEEDED']" in stream_text(out)


def test_a_bash_cell_and_a_failing_cell(kernel):
    reply, out = kernel.run("%%pai_submit --bash --wait\necho \"bash task $PAI_CURRENT_TASK_ROLE_NAME\"\n")
    assert reply["status"] == "ok", out
    assert "[worker-0] bash task worker" in stream_text(out)
    reply, out = kernel.run("%%pai_submit --wait\nraise RuntimeError('the model diverged')\n")
    assert reply["status"] == "ok", out
    text = stream_text(out)
    assert "FAILED" in text and "RuntimeError: the model diverged" in text, text


def test_submit_a_notebook_file(kernel, live_server, tmp_path):
    nb = tmp_path / "train_model.ipynb"
    shutil.copy(DATA / "train_model.ipynb", nb)
    reply, out = kernel.run(f"%pai_submit {nb} -p x=5 --wait", timeout=180)
    text = stream_text(out)
    assert reply["status"] == "ok", out
    assert "[worker-0] result: 50" in text, text
    assert "SUCCEEDED" in text
    reply, out = kernel.run("nbjob = _\nprint(nbjob.key, [f['path'] for f in nbjob.outputs()])")
    assert "alice~train_model" in stream_text(out) and "['train_model.ipynb']" in stream_text(out), out


def test_bad_flags_fail_before_submission_with_one_line(kernel, live_server):
    before = job_count(live_server)
    cases = {
        "%%pai_submit --instances two\nprint(1)": "--instances",
        "%%pai_submit --instances 0\nprint(1)": "--instances: must be at least 1",
        "%%pai_submit --bogus\nprint(1)": "unrecognized arguments: --bogus",
        "%%pai_submit --priority urgent\nprint(1)": "--priority",
        "%%pai_submit -p novalue\nprint(1)": "expected KEY=VALUE",
        "%pai_submit no/such/notebook.ipynb": "no such file",
        f"%pai_submit {DATA / 'train_model.ipynb'} -p nosuch=1": "'nosuch' is not in the notebook's parameters cell",
        "%pai_submit": "needs a FILE",
    }
    for code, expected in cases.items():
        reply, out = kernel.run(code)
        assert reply["status"] == "error", (code, out)
        assert reply["ename"] == "UsageError", (code, reply)
        assert expected in reply["evalue"], (code, reply["evalue"])
        assert "\n" not in reply["evalue"].strip(), (code, reply["evalue"])
    assert job_count(live_server) == before, "a bad flag must not submit anything"


def test_ctrl_c_stops_waiting_not_the_job(kernel, live_server):
    msg_id = kernel.kc.execute("%%pai_submit --wait --name sleeper\nimport time\nprint('started', flush=True)\ntime.sleep(60)\n")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = {j["name"]: j["state"] for j in live_server.http.get(live_server.base + "/jobs").json()}
        if jobs.get("sleeper") == "RUNNING":
            break
        time.sleep(0.2)
    time.sleep(1.5)  # the follower is in its loop
    kernel.km.interrupt_kernel()
    texts = []
    while True:
        msg = kernel.kc.get_iopub_msg(timeout=30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    kernel.kc.get_shell_msg(timeout=10)
    text = "".join(texts)
    assert "stopped waiting; alice~sleeper goes on" in text and "%pai_stop alice~sleeper" in text, text
    assert live_server.state("alice~sleeper")["state"] == "RUNNING"
    reply, out = kernel.run("%pai_stop sleeper")
    assert reply["status"] == "ok" and "stop requested for alice~sleeper" in stream_text(out), out
    deadline = time.monotonic() + 30
    while live_server.state("alice~sleeper")["state"] != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_server.state("alice~sleeper")["state"] == "STOPPED"


def test_listing_magics_show_widgets_in_a_kernel_and_text_on_request(kernel):
    reply, out = kernel.run("%%pai_submit --name listed --wait\nprint('listed job ran')")
    assert reply["status"] == "ok", out
    reply, out = kernel.run("%pai_jobs")
    assert reply["status"] == "ok", out
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in out), out
    assert "JobMonitor" in result_text(out)
    reply, out = kernel.run("%pai_jobs --text")
    assert "alice~listed" in stream_text(out) and "SUCCEEDED" in stream_text(out), out
    reply, out = kernel.run("%pai_marketplace ddp --text")
    text = stream_text(out)
    assert "pytorch-ddp-cpu" in text and "hello-distributed" not in text, text
    reply, out = kernel.run("%pai_quota --text")
    assert "default" in stream_text(out) and "guaranteed" in stream_text(out), out
    reply, out = kernel.run("%pai_logs listed")
    assert "[worker-0] listed job ran" in stream_text(out), out
