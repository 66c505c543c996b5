"""The desktop's HTTP API (FastAPI): `app.create_app` builds it, `main.serve` runs it.

Nothing is imported here, so that `cubicle.server.security` (plain ASGI middleware) can be
used by the agent worker, which must not load the X11 engine.
"""
