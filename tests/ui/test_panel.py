"""The OpenXPU side panel in a real JupyterLab, in headless chromium: each view, against the embedded engine."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from uipage import shot, wait_restored, widen_panel

pytestmark = pytest.mark.timeout(120)

SLEEPER = """protocolVersion: 2
name: {name}
type: job
prerequisites: [{{type: dockerimage, name: img, uri: "python:3.11-slim"}}]
taskRoles:
  worker:
    instances: 1
    dockerImage: img
    resourcePerInstance: {{cpu: 1, memoryMB: 256, gpu: 0}}
    commands: ["echo started; sleep 300"]
"""

panel = "#openxpu-panel"


def open_tab(page, label: str) -> None:
    page.locator('.jp-SideBar [data-id="openxpu-panel"]').first.click() if not page.locator(panel).is_visible() else None
    page.locator(f'{panel} [role="tab"]', has_text=label).click()
    page.wait_for_selector(f'{panel} [role="tab"][aria-selected="true"]:has-text("{label}")')


def field(page, label: str):
    return page.locator(panel).get_by_label(label, exact=True)


def test_panel_opens_restores_and_controls_are_labelled(page, lab, console):
    page.locator('.jp-SideBar [data-id="openxpu-panel"]').first.click()
    page.wait_for_selector(f"{panel} [role=tablist]")
    tabs = page.locator(f'{panel} [role="tab"]').all_inner_texts()
    assert tabs == ["Jobs", "Clusters", "Submit", "Marketplace"]
    for label in ("Submit", "Jobs"):
        open_tab(page, label)
        # every control of the view has an accessible name (label, aria-label or text)
        unnamed = page.evaluate(
            """(sel) => Array.from(document.querySelector(sel).querySelectorAll('input, select, textarea, button'))
                 .filter(el => {
                   if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')) return false;
                   if (el.labels && el.labels.length) return false;
                   if (el.tagName === 'BUTTON' && el.textContent.trim()) return false;
                   return true;
                 }).map(el => el.outerHTML.slice(0, 120))""",
            panel,
        )
        assert unnamed == [], unnamed
    # keyboard: from the Jobs tab, Tab moves through the tabs and Enter opens one
    page.locator(f'{panel} [role="tab"]', has_text="Jobs").focus()
    for _ in range(2):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Submit"
    page.keyboard.press("Enter")
    page.wait_for_selector(f'{panel} [role="tab"][aria-selected="true"]:has-text("Submit")')
    seen = []
    for _ in range(4):  # Marketplace tab, then the form's buttons: all reachable in order
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.textContent"))
    assert seen == ["Marketplace", "Submit", "Submit this notebook", "New"], seen
    # the panel is restored on reload (layout restorer), still on the left
    lab.wait_workspace_saved("openxpu-panel")
    page.reload()
    page.wait_for_selector(f"{panel} [role=tablist]", timeout=60000)
    wait_restored(page)
    assert page.locator(panel).is_visible()
    # the views work at Lab's default sidebar width; the rest of the tests give the panel more room
    assert page.locator(panel).bounding_box()["width"] < 400
    widen_panel(page)
    assert page.locator(panel).bounding_box()["width"] > 400
    assert console.unexpected() == []


def test_submit_from_form_reaches_succeeded_with_logs(page, lab, console):
    open_tab(page, "Submit")
    page.locator(panel).get_by_role("button", name="New").click()
    field(page, "Job name").fill("ui-hello")
    field(page, "Instances").fill("2")
    field(page, "Commands (one per line)").fill('echo "hello-from-ui $PAI_CURRENT_TASK_ROLE_CURRENT_TASK_INDEX"')
    # the form and the YAML editor stay in sync, both ways
    yaml_box = field(page, "Job YAML (protocol v2)")
    text = yaml_box.input_value()
    assert "name: ui-hello" in text and "instances: 2" in text and "hello-from-ui" in text
    yaml_box.fill(text.replace("cpu: 1", "cpu: 2"))
    assert field(page, "CPUs").input_value() == "2"
    field(page, "Add parameter".replace("Add parameter", "Job retries")).fill("1")
    assert "jobRetryCount: 1" in yaml_box.input_value()
    shot(page, "submit")
    page.locator(panel).get_by_role("button", name="Submit", exact=True).click()

    # the detail view opens on the new job and follows it to SUCCEEDED
    page.wait_for_selector(f"{panel} h2:has-text('alice~ui-hello')")
    page.wait_for_selector(f"{panel} .oxp-facts .oxp-state-succeeded", timeout=60000)
    assert lab.state("alice~ui-hello") == "SUCCEEDED"
    config = lab.http.get(f"{lab.api}/jobs/alice~ui-hello/config").text
    assert "cpu: 2" in config and "jobRetryCount: 1" in config
    rows = page.locator(f'{panel} table[aria-label="Tasks"] tbody tr')
    assert rows.count() == 2
    assert all("SUCCEEDED" in t for t in rows.all_inner_texts())
    log = page.locator(f"{panel} pre.oxp-log")
    page.wait_for_function(
        "(el) => el.textContent.includes('hello-from-ui 0')", arg=log.element_handle(), timeout=20000
    )
    # the second task's log, and stderr (empty) switch the viewer
    page.locator(panel).get_by_label("Log of task").select_option("worker-1")
    page.wait_for_function(
        "(el) => el.textContent.includes('hello-from-ui 1')", arg=log.element_handle(), timeout=20000
    )
    shot(page, "job-detail")
    # Clone opens the form pre-filled under a new name
    page.locator(panel).get_by_role("button", name="Clone").click()
    page.wait_for_selector(f'{panel} [role="tab"][aria-selected="true"]:has-text("Submit")')
    assert field(page, "Job name").input_value() == "ui-hello-clone"
    assert field(page, "Instances").input_value() == "2"
    assert console.unexpected() == []


def test_server_validation_error_is_shown_at_the_field(page, lab, console):
    open_tab(page, "Submit")
    page.locator(panel).get_by_role("button", name="New").click()
    # a field rule: the name's pattern, at the name input
    field(page, "Job name").fill("bad name!")
    page.locator(panel).get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_selector(f"{panel} #oxp-err-name")
    assert page.locator(f"{panel} #oxp-err-name").inner_text().startswith("name: must match")
    name = field(page, "Job name")
    assert name.get_attribute("aria-invalid") == "true"
    assert name.get_attribute("aria-describedby") == "oxp-err-name"
    assert page.evaluate("document.activeElement.getAttribute('data-field')") == "name"
    # a rule on the role's resources (more GPUs than a node of the VC holds), at that role's resources
    field(page, "Job name").fill("ui-too-big")
    field(page, "GPUs").fill("64")
    page.locator(panel).get_by_role("button", name="Submit", exact=True).click()
    page.wait_for_selector(f"{panel} #oxp-err-role-0-resources")
    error = page.locator(f"{panel} #oxp-err-role-0-resources").inner_text()
    assert error.startswith("taskRoles.worker.resourcePerInstance:") and "64 GPU" in error, error
    group = page.locator(f'{panel} [data-field="role:0:resources"]')
    assert group.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.getAttribute('data-field')") == "role:0:resources"
    assert page.locator(f"{panel} .oxp-field-error").count() == 1  # the old error is gone, only this one
    shot(page, "submit-error")
    for bad in ("alice~ui-too-big", "alice~bad name!"):
        assert lab.http.get(f"{lab.api}/jobs/{bad}").status_code == 404  # nothing was stored
    # the browser logs the 400 answers themselves; nothing else may be logged
    assert console.unexpected(["status of 400"]) == []


def test_jobs_list_filters_and_stops_a_running_job(page, lab, console):
    key = lab.submit(SLEEPER.format(name="ui-sleeper"))
    lab.wait_state(key, {"RUNNING"})
    open_tab(page, "Jobs")
    row = page.locator(f'{panel} tr[data-job="{key}"]')
    row.locator(".oxp-state-running").wait_for(timeout=20000)  # live update, no refresh clicked
    # filters: by state and by text, paged from the server
    rows = page.locator(f"{panel} tbody tr[data-job]")
    field(page, "Filter by state").select_option("SUCCEEDED")
    expect(row).to_have_count(0)
    expect(page.locator(f'{panel} tr[data-job="alice~ui-hello"]')).to_have_count(1)
    field(page, "Filter by state").select_option("")
    field(page, "Search jobs").fill("sleeper")
    expect(rows).to_have_count(1)
    expect(row).to_have_count(1)
    field(page, "Search jobs").fill("")
    expect(rows).not_to_have_count(1)
    shot(page, "jobs")
    row.get_by_label(f"Select {key}").check()
    page.locator(panel).get_by_role("button", name=re.compile(r"Stop 1 selected")).click()
    row.locator(".oxp-state-stopped").wait_for(timeout=30000)
    assert lab.state(key) == "STOPPED"
    assert console.unexpected() == []


def test_waiting_job_says_why_and_where_it_queues(page, lab, console):
    # the default VC has 4 GPUs (2 per node-level pair): a 2x2-GPU sleeper holds them, the next such job waits
    big = SLEEPER.replace("gpu: 0", "gpu: 2").replace("instances: 1", "instances: 2")
    holder = lab.submit(big.format(name="ui-holder"))
    lab.wait_state(holder, {"RUNNING"})
    waiter = lab.submit(big.format(name="ui-waiter").replace("sleep 300", "true"))
    try:
        open_tab(page, "Jobs")
        page.locator(f'{panel} tr[data-job="{waiter}"] button.oxp-link').click()
        note = page.locator(f"{panel} .oxp-waiting")
        note.wait_for(timeout=20000)
        assert "Why is it waiting?" in note.inner_text()
        assert "queue position 1" in note.inner_text()
        page.locator(f"{panel}").get_by_role("button", name="Stop").click()
        page.wait_for_selector(f"{panel} .oxp-facts .oxp-state-stopped", timeout=30000)
    finally:
        lab.http.put(f"{lab.api}/jobs/{holder}/executionType", json={"value": "STOP"})
        lab.http.put(f"{lab.api}/jobs/{waiter}/executionType", json={"value": "STOP"})
    assert console.unexpected() == []


def test_failed_job_shows_exit_diagnostics(page, lab, console):
    key = lab.submit(SLEEPER.format(name="ui-fails").replace("echo started; sleep 300", "no-such-command-xyz"))
    lab.wait_state(key, {"FAILED"})
    open_tab(page, "Jobs")
    page.locator(f'{panel} tr[data-job="{key}"] button.oxp-link').click()
    hint = page.locator(f'{panel} [aria-label="Exit diagnostics"]')
    hint.wait_for(timeout=20000)
    detail = lab.http.get(f"{lab.api}/jobs/{key}").json()["jobStatus"]
    spec = detail["appExitSpec"]
    assert f"Exit {spec['code']}" in hint.inner_text()
    if spec["reason"]:
        assert spec["reason"] in hint.inner_text()
    page.locator(f"{panel} details.oxp-config summary").click()
    assert "no-such-command-xyz" in page.locator(f'{panel} pre[aria-label="Job config"]').inner_text()
    shot(page, "job-failed")
    assert console.unexpected() == []


def test_clusters_view(page, lab, console):
    open_tab(page, "Clusters")
    vcs = lab.http.get(f"{lab.api}/virtual-clusters").json()
    for name, vc in vcs.items():
        row = page.locator(f'{panel} tr[data-vc="{name}"]')
        row.wait_for(timeout=10000)
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == str(vc["resourcesGuaranteed"]["gpu"])  # guaranteed GPUs
    assert set(vcs) >= {"default", "research"}
    shot(page, "clusters")
    assert console.unexpected() == []


def test_marketplace_view(page, lab, console):
    open_tab(page, "Marketplace")
    items = lab.http.get(f"{lab.api}/marketplace/items").json()["items"]
    assert items, "the built-in templates are listed"
    first = items[0]
    page.locator(panel).get_by_role("button", name=f"Preview {first['name']}").click()
    page.wait_for_selector(f"{panel} .oxp-preview h3:has-text('{first['name']}')")
    shot(page, "marketplace")
    page.locator(f"{panel} .oxp-preview").get_by_role("button", name="Use").click()
    page.wait_for_selector(f'{panel} [role="tab"][aria-selected="true"]:has-text("Submit")')
    assert "taskRoles" in field(page, "Job YAML (protocol v2)").input_value()
    assert console.unexpected() == []


def test_dark_theme(page, lab, console):
    def luminance() -> float:
        rgb = page.evaluate("getComputedStyle(document.querySelector('#openxpu-panel')).backgroundColor")
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    open_tab(page, "Jobs")
    light = luminance()
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'", timeout=20000)
    page.wait_for_timeout(500)
    dark = luminance()
    assert light > 0.8 and dark < 0.3, (light, dark)
    shot(page, "jobs-dark")
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
    page.wait_for_function("document.body.dataset.jpThemeLight === 'true'", timeout=20000)
    assert console.unexpected() == []


def test_entry_points(page, lab, console):
    # the command palette's OpenXPU category, the status bar item, the file-browser item for job YAML
    assert page.evaluate("window.jupyterapp.commands.hasCommand('openxpu:run-file')")
    status = page.locator(".oxp-status-button")
    status.wait_for()
    assert re.search(r"OpenXPU: \d+ running, \d+ waiting jobs", status.get_attribute("aria-label"))
    page.evaluate("window.jupyterapp.commands.execute('apputils:activate-command-palette')")
    page.locator(".jp-ModalCommandPalette .lm-CommandPalette-input").fill("OpenXPU")
    # "Show my jobs" has no "OpenXPU" in its label: it matches through its palette category
    for label in ("Open the OpenXPU panel", "Show my jobs", "Submit a job"):
        expect(page.locator(".jp-ModalCommandPalette .lm-CommandPalette-item", has_text=label)).to_be_visible()
    page.keyboard.press("Escape")
    (lab.tmp / "root" / "hello.yaml").write_text(SLEEPER.format(name="ui-from-file").replace("sleep 300", "true"))
    page.evaluate("window.jupyterapp.commands.execute('filebrowser:go-to-path', {path: '/'})")
    page.evaluate("window.jupyterapp.commands.execute('filebrowser:refresh')")
    item = page.locator('.jp-DirListing-item[data-file-type="yaml"]', has_text="hello.yaml")
    item.wait_for(timeout=10000)
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Run as OpenXPU job").click()
    page.wait_for_selector(f"{panel} h2:has-text('alice~ui-from-file')", timeout=20000)
    lab.wait_state("alice~ui-from-file", {"SUCCEEDED"})
    assert console.unexpected() == []
    # the notebook toolbar button: the server converts the notebook (convert/notebook), the job runs
    # with its kernel named, Lab opens it without the modal "Select Kernel" dialog
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (lab.tmp / "root" / "nb.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5})
    )
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:open', {path: 'nb.ipynb'}); }")
    button = page.locator('.jp-NotebookPanel-toolbar [data-command="openxpu:run-notebook"]')
    button.wait_for(timeout=20000)
    button.click()
    page.wait_for_selector(f"{panel} h2:has-text('alice~nb')", timeout=20000)
    assert console.unexpected() == []
    page.evaluate("async () => { await window.jupyterapp.commands.execute('application:close-all'); }")

