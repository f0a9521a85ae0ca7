"""OpenXPU engine: OpenPAI's job platform as a jupyter-server extension."""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .app import OpenXPU

    return [{"module": "openxpu_server", "app": OpenXPU}]


def _jupyter_labextension_paths():
    """The prebuilt JupyterLab panel (built from labextension/); `jupyter labextension develop` uses this."""
    return [{"src": "labextension", "dest": "openxpu"}]
