"""The desktop's HTTP API (FastAPI). `create_app` builds it; `main.serve` runs it."""

from .app import create_app

__all__ = ["create_app"]
