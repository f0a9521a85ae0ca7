"""What the live views share: a refresh thread that stops when the widget is closed."""

from __future__ import annotations

import logging
import threading

import ipywidgets as w

log = logging.getLogger("openxpu_lab.widgets")

STATE_COLORS = {
    "WAITING": "#b58900",
    "RUNNING": "#268bd2",
    "STOPPING": "#6c71c4",
    "SUCCEEDED": "#2e7d32",
    "FAILED": "#c62828",
    "STOPPED": "#8e24aa",
    "UNKNOWN": "#757575",
}


class LiveBox(w.VBox):
    """A VBox that calls `refresh()` every `interval` seconds from a daemon thread until closed."""

    def __init__(self, *, interval: float | None, **kwargs):
        super().__init__(**kwargs)
        self.interval = interval
        self.error = w.HTML()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"openxpu-{type(self).__name__}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.safe_refresh()

    def safe_refresh(self) -> None:
        """refresh(), showing an error line instead of raising (a server restart must not kill the view)."""
        with self._lock:
            try:
                self.refresh()
                self.error.value = ""
            except Exception as e:  # shown in the widget; the loop goes on
                log.debug("refresh failed", exc_info=True)
                self.error.value = f"<span style='color:#c62828'>refresh failed: {type(e).__name__}: {e}</span>"

    def refresh(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def refreshing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop refreshing, then close the widget and its children."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for child in list(self.children):
            child.close()
        super().close()


def badge(state: str) -> str:
    color = STATE_COLORS.get(state, "#757575")
    return f"<span style='color:white;background:{color};padding:0 6px;border-radius:3px'>{state}</span>"
