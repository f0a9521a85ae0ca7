"""OpenXPU engine: OpenPAI's job platform as a jupyter-server extension."""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .app import OpenXPU

    return [{"module": "openxpu_server", "app": OpenXPU}]
