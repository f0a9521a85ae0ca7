"""Business rules that the API handlers and the CLI call."""
