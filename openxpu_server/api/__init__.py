"""REST API handlers (thin; they call the services)."""
