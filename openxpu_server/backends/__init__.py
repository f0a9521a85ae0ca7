"""Backends: where task attempts really run (see `base.Backend`).

Deliberately import-free: the local backend's launcher runs as
`python -m openxpu_server.backends.launcher` (or straight from its file), and every import here
would add to each task's start latency. Import implementations from their modules, e.g.
`from openxpu_server.backends.local import LocalBackend`.
"""
