"""The desktop's HTTP API (FastAPI): `app.create_app` builds it, `main.serve` runs it, and
`runner` is its half that acts as the desktop user."""
