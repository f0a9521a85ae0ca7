"""Helpers the panel's tests share (a module of its own: `from conftest import` is ambiguous when
pytest collects several test folders at once)."""

from __future__ import annotations

from pathlib import Path

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def wait_restored(page) -> None:
    """Wait until Lab has restored its layout (it moves the focus to the main area when it has)."""
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.wait_for_timeout(300)


def widen_panel(page, width: int = 460) -> None:
    """Drag the splitter right of the side panel, as a user does to give it room (Lab's default is 250px)."""
    box = page.locator("#openxpu-panel").bounding_box()
    if box["width"] >= width - 5:
        return
    x, y = box["x"] + box["width"] + 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(box["x"] + width, y, steps=5)
    page.mouse.up()


def shot(page, name: str) -> None:
    """A screenshot of the panel for the user guide (docs/images/<name>.png)."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.locator("#openxpu-panel").screenshot(path=str(DOCS_IMAGES / f"{name}.png"))
