"""MarketplaceBrowser: search and filter templates, preview description and YAML, Submit or Open as notebook."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as w
import nbformat
import yaml

from ..client import Client, OpenXPUApiError
from ..convert import job_name, notebook_of_job
from .base import LiveBox


def _markdown(text: str) -> str:
    try:
        import mistune

        return mistune.html(text)
    except Exception:  # mistune comes with nbconvert; plain text otherwise
        return f"<pre>{html.escape(text)}</pre>"


def template_notebook(item: dict) -> nbformat.NotebookNode:
    """The notebook "Open as notebook" writes: the template's own notebook, the one a notebook job
    carries, or a new one that submits the template's YAML with the client."""
    if item.get("notebook"):
        return nbformat.from_dict(item["notebook"])
    job = yaml.safe_load(item["protocol"])
    carried = notebook_of_job(job) if isinstance(job, dict) else None
    if carried is not None:
        return carried
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(item.get("description") or f"# {item['name']}"),
        nbformat.v4.new_code_cell(f"JOB = '''\\\n{item['protocol'].rstrip()}\n'''"),
        nbformat.v4.new_code_cell(
            "from openxpu_lab import Client\n\n"
            "job = Client().submit(JOB, unique=True)\n"
            "job.wait()\n"
            "print(job.state)\n"
            "print(job.logs())"
        ),
    ]
    return nb


class MarketplaceBrowser(LiveBox):
    """`MarketplaceBrowser(client)`: search box, tag and category filters, a result list; the
    selected template's description and YAML; Submit (one job, or one per sweep point), Open as
    notebook (writes `<name>.ipynb` in `folder`) and Star."""

    def __init__(self, client: Client, *, keyword: str = "", tag: str | None = None, category: str | None = None,
                 folder: str | Path = ".", autostart: bool = True):
        self.client = client
        self.folder = Path(folder)
        self.search = w.Text(value=keyword, placeholder="search templates", description="search")
        self.tag = w.Dropdown(description="tag", options=[("any", "")], value="")
        self.category = w.Dropdown(description="category", options=[("any", "")], value="")
        self.results = w.Select(options=[], rows=8, layout=w.Layout(width="100%"))
        self.description_html = w.HTML()
        self.yaml_view = w.Textarea(disabled=True, layout=w.Layout(width="100%", height="220px"))
        self.preview = w.Tab(children=[self.description_html, self.yaml_view])
        self.preview.set_title(0, "Description")
        self.preview.set_title(1, "YAML")
        self.submit_button = w.Button(description="Submit", button_style="primary", icon="play", disabled=True)
        self.open_button = w.Button(description="Open as notebook", icon="book", disabled=True)
        self.star_button = w.ToggleButton(description="Star", icon="star", disabled=True)
        self.status = w.HTML()
        super().__init__(
            interval=None,
            children=[
                w.HBox([self.search, self.tag, self.category]), self.results, self.preview,
                w.HBox([self.submit_button, self.open_button, self.star_button]), self.status,
            ],
        )
        self.children = (*self.children, self.error)
        self.items: list[dict] = []
        self.item: dict | None = None
        self.last_jobs: list = []
        self._pending = (tag, category)
        self.search.observe(lambda _: self.safe_refresh(), names="value")
        self.tag.observe(lambda _: self.safe_refresh(), names="value")
        self.category.observe(lambda _: self.safe_refresh(), names="value")
        self.results.observe(lambda _: self._select(), names="value")
        self.submit_button.on_click(lambda _: self._guard(self.submit_selected))
        self.open_button.on_click(lambda _: self._guard(self.open_selected))
        self.star_button.observe(lambda ch: self._guard(lambda: self._star(ch["new"])), names="value")
        if autostart:
            self.safe_refresh()

    def _guard(self, action) -> None:
        try:
            action()
        except (OpenXPUApiError, OSError, ValueError) as e:
            self.status.value = f"<span style='color:#c62828'>{html.escape(str(e))}</span>"

    def refresh(self) -> None:
        tags = [("any", ""), *((t, t) for t in self.client.marketplace_tags())]
        cats = [("any", ""), *((c, c) for c in self.client.marketplace_categories())]
        if list(self.tag.options) != tags:
            self.tag.options = tags
        if list(self.category.options) != cats:
            self.category.options = cats
        tag, category = self._pending
        if tag is not None or category is not None:
            self._pending = (None, None)
            if tag in dict(tags).values():
                self.tag.value = tag
            if category in dict(cats).values():
                self.category.value = category
        self.items = self.client.marketplace(
            keyword=self.search.value or None, tag=self.tag.value or None, category=self.category.value or None
        )
        options = [(f"{i['name']} — {i['summary'][:60]} ({i['author']}, {i['useCount']} uses, {i['starCount']}★)", i["id"]) for i in self.items]
        current = self.results.value
        self.results.options = options
        ids = [i["id"] for i in self.items]
        if current in ids:
            self.results.value = current
        elif ids:
            self.results.value = ids[0]
        else:
            self._select()

    def _select(self) -> None:
        item_id = self.results.value
        if not item_id:
            self.item = None
            self.description_html.value, self.yaml_view.value = "<i>no template matches</i>", ""
            for b in (self.submit_button, self.open_button, self.star_button):
                b.disabled = True
            return
        self.item = self.client.marketplace_item(item_id)
        self.description_html.value = _markdown(self.item["description"] or self.item["summary"])
        self.yaml_view.value = self.item["protocol"]
        self.submit_button.disabled = self.open_button.disabled = self.star_button.disabled = False
        self.star_button.unobserve_all()
        self.star_button.value = self.item["starred"]
        self.star_button.observe(lambda ch: self._guard(lambda: self._star(ch["new"])), names="value")

    def submit_selected(self) -> list:
        """Submit the selected template (one job per sweep point); returns the job handles."""
        if self.item is None:
            return []
        result = self.client.use_item(self.item["id"])
        self.last_jobs = result if isinstance(result, list) else [result]
        self.status.value = "submitted " + ", ".join(html.escape(j.key) for j in self.last_jobs)
        return self.last_jobs

    def open_selected(self) -> Path | None:
        """Write the selected template as a notebook in `folder`; returns its path."""
        if self.item is None:
            return None
        nb = template_notebook(self.item)
        path = self.folder / f"{job_name(self.item['name'])}.ipynb"
        n = 1
        while path.exists():
            path = self.folder / f"{job_name(self.item['name'])}-{n}.ipynb"
            n += 1
        nbformat.write(nb, path)
        self.status.value = f"wrote <a href='{html.escape(path.name)}' target='_blank'>{html.escape(str(path))}</a>"
        return path

    def _star(self, on: bool) -> None:
        if self.item is None:
            return
        self.client.star_item(self.item["id"], on)
        self.status.value = ("starred " if on else "unstarred ") + html.escape(self.item["name"])
