"""FleetClient: the fleet's API from Python (the worker's `desktop: "new"`, the benches, the
OSWorld provider). Errors come back as cubicle.client.CubicleError, with the fleet's code and
message. Imports nothing of the engines."""

from __future__ import annotations

from typing import Any

import httpx

from cubicle.client import CubicleError, DesktopClient

from .models import DesktopView


class FleetClient:
    def __init__(self, url: str, token: str, timeout: float = 180.0):
        # Long: a cold create waits until the desktop is ready.
        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def __enter__(self) -> FleetClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        response = self._http.request(method, path, **options)
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise CubicleError(response.status_code, error.get("code", "http_error"), error.get("message", response.text))
        return response

    def create(self, **options: Any) -> DesktopView:
        """A new desktop (see NewDesktop for the options: width, height, ttl_s, idle_timeout_s,
        labels, office, wait); its `token` is in the answer, and only there."""
        return DesktopView.model_validate(self._send("POST", "/desktops", json=options).json())

    def get(self, desktop_id: str) -> DesktopView:
        return DesktopView.model_validate(self._send("GET", f"/desktops/{desktop_id}").json())

    def list(self, labels: dict[str, str] | None = None, status: str | None = None) -> list[DesktopView]:
        params: list[tuple[str, str]] = [("label", f"{k}={v}") for k, v in (labels or {}).items()]
        if status:
            params.append(("status", status))
        desktops = self._send("GET", "/desktops", params=params).json()["desktops"]
        return [DesktopView.model_validate(desktop) for desktop in desktops]

    def delete(self, desktop_id: str) -> None:
        self._send("DELETE", f"/desktops/{desktop_id}")

    def keepalive(self, desktop_id: str, ttl_s: int | None = None) -> DesktopView:
        body = {"ttl_s": ttl_s} if ttl_s is not None else None
        return DesktopView.model_validate(self._send("POST", f"/desktops/{desktop_id}/keepalive", json=body).json())

    def reset(self, desktop_id: str) -> DesktopView:
        return DesktopView.model_validate(self._send("POST", f"/desktops/{desktop_id}/reset").json())

    @staticmethod
    def desktop(created: DesktopView, token: str | None = None, timeout: float = 60.0) -> DesktopClient:
        """A DesktopClient for a desktop through the fleet, with its token (from its creation)."""
        return DesktopClient(created.urls.api, token or created.token, timeout=timeout)
