"""Live notebook views over the REST API (ipywidgets 8; the quota chart is a plotly FigureWidget).

Each view refreshes from a background thread, so the kernel stays free, and stops refreshing when
it is closed. `refresh()` updates it at once (what the tests call).
"""

from .jobs import JobMonitor
from .marketplace import MarketplaceBrowser
from .quota import QuotaView, quota_rows

__all__ = ["JobMonitor", "MarketplaceBrowser", "QuotaView", "quota_rows"]
