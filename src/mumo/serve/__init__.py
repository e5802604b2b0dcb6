"""mumo serve: a run (and an index) behind a REST API and a web page. FastAPI and uvicorn load only
here (the library imports without them)."""

from mumo.serve.inputs import Limits

__all__ = ["Limits", "create_app", "serve"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See mumo.serve.app.create_app (imported on use: FastAPI loads only when serving)."""
    from mumo.serve.app import create_app as create

    return create(*args, **kwargs)


def serve(*args, **kwargs):  # type: ignore[no-untyped-def]
    from mumo.serve.cli import serve as run

    return run(*args, **kwargs)
