"""``rnnkit serve``: trained runs behind an HTTP API (FastAPI on uvicorn).

``create_app(runs)`` builds the ASGI application (tests drive it with fastapi.testclient, without
a socket); ``rnnkit.serve.command`` is the command that runs it on uvicorn."""

from rnnkit.serve.app import create_app
from rnnkit.serve.served import ServedModel, load_models

__all__ = ["ServedModel", "create_app", "load_models"]
