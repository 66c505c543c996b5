"""The fleet's desktops and their whole life: created cold or taken from the warm pool, reset,
kept alive, reaped (TTL, idle timeout, a dead container or Pod), deleted; and found again by
a fleet that restarted.

Blocking calls (the engines, the desktops' own /health) run in the caller's thread: the
routes call in from the thread pool, and one background thread, the keeper, does the rest
every `tick_s`: reaping, noticing deaths, refilling the pool.

Tokens: a desktop's token is made here, returned once, and never kept: the desktop and the
fleet hold only its SHA-256. A pooled desktop waits with a pool token that only this process
knows; taking it from the pool replaces that with the new user's digest (the desktop's
PUT /token). A restarted fleet cannot know a pool token, so it removes the pooled desktops it
finds and fills the pool again; claimed desktops it adopts as they were.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from cubicle.web import ApiError, new_token, token_matches
from cubicle.web.auth import token_digest

from .backends import Backend, BackendError, DesktopSpec, Limits
from .models import NewDesktop

log = logging.getLogger("cubicle.fleet")


def _now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class FleetSettings:
    image: str = "cubicle-desktop"
    image_without_office: str | None = None
    name: str = "cubicle"
    warm: int = 0
    max_desktops: int = 20
    max_ttl_s: int = 86_400
    limits: Limits = field(default_factory=Limits)
    ready_timeout_s: float = 120.0
    failed_kept_s: float = 300.0  # how long a failed desktop's record stays visible
    tick_s: float = 1.0
    pool_size: tuple[int, int] = (1280, 800)


@dataclass
class Desktop:
    id: str
    ref: str
    width: int
    height: int
    office: bool | None
    token_digest: str
    created_at: datetime
    expires_at: datetime
    idle_timeout_s: int | None
    labels: dict[str, str]
    status: str = "starting"
    pooled: bool = False
    address: str | None = None
    reason: str | None = None
    last_active_at: datetime = field(default_factory=_now)
    failed_at: float | None = None
    pool_token: str | None = field(default=None, repr=False)
    osworld: bool = False

    def meta(self) -> dict[str, Any]:
        """What the backend keeps with it, for a fleet that restarts."""
        return {"id": self.id, "width": self.width, "height": self.height, "office": self.office,
                "token_digest": self.token_digest, "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "idle_timeout_s": self.idle_timeout_s, "labels": self.labels,
                "pooled": self.pooled, "osworld": self.osworld}

    @classmethod
    def from_meta(cls, ref: str, meta: dict[str, Any]) -> Desktop | None:
        created, expires = _parse(meta.get("created_at")), _parse(meta.get("expires_at"))
        if not (meta.get("id") and meta.get("token_digest") and created and expires):
            return None
        return cls(id=meta["id"], ref=ref, width=int(meta.get("width") or 1280), height=int(meta.get("height") or 800),
                   office=meta.get("office"), token_digest=meta["token_digest"], created_at=created, expires_at=expires,
                   idle_timeout_s=meta.get("idle_timeout_s"), labels=dict(meta.get("labels") or {}),
                   osworld=bool(meta.get("osworld")))


class FleetManager:
    def __init__(self, backend: Backend, settings: FleetSettings, operator_digest: Callable[[str], str],
                 http: httpx.Client | None = None):
        """`operator_digest(ref)`: the digest of the fleet's own token for a desktop (auth.py)."""
        self.backend = backend
        self.operator_digest = operator_digest
        self.settings = settings
        self.http = http or httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0))
        self._desktops: dict[str, Desktop] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refilling = 0  # pooled desktops being made right now
        self._keeper: threading.Thread | None = None

    # -- start and stop -----------------------------------------------------------------------

    def start(self) -> None:
        self.adopt()
        self._keeper = threading.Thread(target=self._keep, name="fleet-keeper", daemon=True)
        self._keeper.start()

    def adopt(self) -> None:
        """Take back every desktop of this fleet the backend knows; remove what cannot be used."""
        for owned in self.backend.list_owned():
            desktop = Desktop.from_meta(owned.ref, owned.meta)
            if desktop is None or owned.meta.get("pooled") or owned.state in ("gone", "failed"):
                self._remove_quietly(owned.ref, "left over" if desktop is None else "pooled or dead at adoption")
                continue
            desktop.address = owned.address
            # A generous wait: a busy desktop answering late is still running, and one marked
            # starting would refuse its user (503) until the keeper's next round.
            running = owned.state == "running" and self._healthy(owned.address, timeout_s=10.0)
            desktop.status = "running" if running else "starting"
            with self._lock:
                self._desktops[desktop.id] = desktop
            log.info("adopted desktop %s (%s)", desktop.id, desktop.status)

    def shutdown(self) -> None:
        """Stops the keeper; pooled desktops go (their pool token dies with this process), the
        others stay, to be adopted by the next fleet."""
        self._stop.set()
        self._wake.set()
        if self._keeper is not None:
            self._keeper.join(30)
        with self._lock:
            pooled = [d for d in self._desktops.values() if d.pooled]
        for desktop in pooled:
            self._remove_quietly(desktop.ref, "pool at shutdown")
        self.http.close()

    # -- the API's operations ---------------------------------------------------------------

    def create(self, request: NewDesktop) -> tuple[Desktop, str]:
        """A desktop for a user, and its token (the only time anyone sees it)."""
        self._check_times(request.ttl_s, request.idle_timeout_s)
        self._image(request.office)  # refuses an office choice this fleet has no image for
        token = new_token()
        now = _now()
        wanted: dict[str, Any] = dict(created_at=now, expires_at=now + timedelta(seconds=request.ttl_s),
                      idle_timeout_s=request.idle_timeout_s, labels=dict(request.labels), token_digest=token_digest(token))
        desktop = self._claim_pooled(request, wanted)
        if desktop is None:
            desktop = self._create(request.width, request.height, request.office, pooled=False,
                                   osworld=request.osworld, **wanted)
            if request.wait:
                self._wait_ready(desktop)
        self._wake.set()  # the pool may want refilling
        return desktop, token

    def get(self, desktop_id: str) -> Desktop:
        with self._lock:
            desktop = self._desktops.get(desktop_id)
        if desktop is None or desktop.pooled:
            raise ApiError(404, "desktop_not_found", f"No desktop {desktop_id!r}. GET /desktops lists them.")
        return desktop

    def list(self, labels: dict[str, str], status: str | None) -> list[Desktop]:
        with self._lock:
            found = [d for d in self._desktops.values() if not d.pooled]
        return sorted((d for d in found if all(d.labels.get(k) == v for k, v in labels.items())
                       and (status is None or d.status == status)), key=lambda d: (d.created_at, d.id))

    def delete(self, desktop_id: str) -> None:
        desktop = self.get(desktop_id)
        with self._lock:
            self._desktops.pop(desktop.id, None)
        try:
            self.backend.delete(desktop.ref)
        except BackendError as error:
            with self._lock:
                self._desktops[desktop.id] = desktop  # still there: keep it listed, to be deleted again
            raise ApiError(503, "backend_unavailable", f"Desktop {desktop.id} could not be removed: {error}") from None
        log.info("deleted desktop %s", desktop.id)
        self._wake.set()

    def keepalive(self, desktop_id: str, ttl_s: int | None) -> Desktop:
        desktop = self.get(desktop_id)
        if ttl_s is not None:
            self._check_times(ttl_s, None)
            desktop.expires_at = _now() + timedelta(seconds=ttl_s)
            self._save(desktop)
        desktop.last_active_at = _now()
        return desktop

    def reset(self, desktop_id: str) -> Desktop:
        """A fresh desktop from the image under the same id, token, labels and expiry."""
        old = self.get(desktop_id)
        keep = dict(created_at=old.created_at, expires_at=old.expires_at, idle_timeout_s=old.idle_timeout_s,
                    labels=old.labels, token_digest=old.token_digest)
        request = NewDesktop(width=old.width, height=old.height, office=old.office, ttl_s=max(10, self._seconds_left(old)),
                             osworld=old.osworld)
        fresh = self._claim_pooled(request, keep, desktop_id=old.id)
        if fresh is None:
            fresh = self._create(old.width, old.height, old.office, pooled=False, desktop_id=old.id, replacing=True,
                                 osworld=old.osworld, **keep)
            self._wait_ready(fresh)
        self._remove_quietly(old.ref, f"reset of {old.id}")
        self._wake.set()
        return fresh

    # -- the proxy's questions --------------------------------------------------------------

    def token_opens(self, desktop_id: str, token: str | None) -> bool:
        with self._lock:
            desktop = self._desktops.get(desktop_id)
        return (desktop is not None and not desktop.pooled and token is not None
                and token_matches(desktop.token_digest, token_digest(token)))

    def route(self, desktop_id: str) -> str:
        """Where to send a request for this desktop; counts as activity."""
        desktop = self.get(desktop_id)
        if desktop.status == "failed":
            raise ApiError(502, "desktop_failed", f"Desktop {desktop.id} has failed ({desktop.reason}); delete it and create another.")
        if desktop.status == "starting" and not desktop.pooled and self._healthy(desktop.address):
            desktop.status = "running"  # ready before the keeper's next look (one adopted by a restart, say)
        if desktop.status != "running" or not desktop.address:
            raise ApiError(503, "desktop_starting", f"Desktop {desktop.id} is still starting: retry in a moment.")
        desktop.last_active_at = _now()
        return desktop.address

    def counts(self) -> tuple[int, int]:
        """(desktops of users, pooled desktops ready to be handed out)."""
        with self._lock:
            users = sum(1 for d in self._desktops.values() if not d.pooled)
            ready = sum(1 for d in self._desktops.values() if d.pooled and d.status == "running")
            return users, ready

    # -- making desktops --------------------------------------------------------------------

    def _image(self, office: bool | None) -> str:
        if office is False:
            if not self.settings.image_without_office:
                raise ApiError(422, "invalid_request", "office: false needs a desktop image without LibreOffice, and this "
                               "fleet has none (start it with --image-without-office).")
            return self.settings.image_without_office
        return self.settings.image

    def _check_times(self, ttl_s: int, idle_timeout_s: int | None) -> None:
        if ttl_s > self.settings.max_ttl_s:
            raise ApiError(422, "invalid_request", f"ttl_s: {ttl_s} s is more than this fleet allows "
                           f"({self.settings.max_ttl_s} s); ask for less, and keep it alive with POST .../keepalive.")
        if idle_timeout_s is not None and idle_timeout_s > ttl_s:
            raise ApiError(422, "invalid_request", f"idle_timeout_s: {idle_timeout_s} s is longer than ttl_s ({ttl_s} s).")

    def _create(self, width: int, height: int, office: bool | None, pooled: bool, desktop_id: str | None = None,
                replacing: bool = False, osworld: bool = False, **fields: Any) -> Desktop:
        """Start one on the backend. A pooled one's room was reserved by the keeper; one that
        replaces another (a reset) takes that one's room."""
        desktop_id = desktop_id or secrets.token_hex(6)
        ref = f"{self.settings.name}-{secrets.token_hex(6)}"
        desktop = Desktop(id=desktop_id, ref=ref, width=width, height=height, office=office, pooled=pooled,
                          osworld=osworld, **fields)
        with self._lock:
            counted = len(self._desktops) + self._refilling - (1 if replacing else 0)  # reserved rooms too
            if not pooled and counted >= self.settings.max_desktops:
                raise ApiError(429, "quota_exceeded", f"This fleet runs at most {self.settings.max_desktops} desktops, and "
                               "that many exist: delete one (DELETE /desktops/{id}) or wait for one to expire.")
            if not replacing:
                self._desktops[desktop_id] = desktop
        spec = DesktopSpec(ref=ref, image=self._image(office), width=width, height=height,
                           token_digest=desktop.token_digest, operator_digest=self.operator_digest(ref),
                           limits=self.settings.limits, meta=desktop.meta(), osworld=osworld)
        try:
            self.backend.create(spec)
        except BackendError as error:
            with self._lock:
                if self._desktops.get(desktop_id) is desktop:
                    del self._desktops[desktop_id]
            raise ApiError(503, "backend_unavailable", f"No desktop could be started: {error}") from None
        if replacing:
            with self._lock:
                self._desktops[desktop_id] = desktop
        log.info("created desktop %s (%s)%s", desktop_id, ref, " for the pool" if pooled else "")
        return desktop

    def _wait_ready(self, desktop: Desktop) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            state = self.backend.state(desktop.ref)
            if state in ("failed", "gone"):
                self._fail(desktop, f"its {'containers' if self.backend.name == 'docker' else 'Pod'} stopped while starting")
                raise ApiError(502, "desktop_failed", f"Desktop {desktop.id} failed while starting; see the engine's logs of {desktop.ref}.")
            desktop.address = desktop.address or self.backend.address(desktop.ref)
            if self._healthy(desktop.address):
                desktop.status = "running"
                desktop.last_active_at = _now()
                return
            time.sleep(0.05)
        self._fail(desktop, f"not ready within {self.settings.ready_timeout_s:g} s")
        raise ApiError(504, "desktop_not_ready", f"Desktop {desktop.id} did not become ready within "
                       f"{self.settings.ready_timeout_s:g} s; it has been removed.")

    def _healthy(self, address: str | None, timeout_s: float = 2.0) -> bool:
        if not address:
            return False
        try:
            return self.http.get(address + "/health", timeout=timeout_s).status_code == 200
        except httpx.HTTPError:
            return False

    def _claim_pooled(self, request: NewDesktop, fields: dict[str, Any], desktop_id: str | None = None) -> Desktop | None:
        """A ready pooled desktop of the asked size, now with the user's token digest, or None."""
        if (request.width, request.height) != self.settings.pool_size or request.office is False or request.osworld:
            return None  # the pool's desktops serve no OSWorld protocol: that is chosen when a desktop starts
        while True:
            with self._lock:
                desktop = next((d for d in self._desktops.values() if d.pooled and d.status == "running"), None)
                if desktop is None:
                    return None
                del self._desktops[desktop.id]  # nobody else takes it meanwhile
            try:
                response = self.http.put(f"{desktop.address}/token", json={"sha256": fields["token_digest"]},
                                         headers={"Authorization": f"Bearer {desktop.pool_token}"})
                response.raise_for_status()
            except httpx.HTTPError as error:
                log.warning("pooled desktop %s refused its new token (%s): removing it", desktop.id, error)
                self._remove_quietly(desktop.ref, "pooled desktop that refused its token")
                continue
            claimed = replace(desktop, id=desktop_id or desktop.id, pooled=False, pool_token=None,
                              last_active_at=_now(), **fields)
            with self._lock:
                self._desktops[claimed.id] = claimed
            self._save(claimed)
            log.info("desktop %s taken from the pool", claimed.id)
            return claimed

    def _refill(self) -> None:
        """One more pooled desktop (runs in a thread of its own; its room is reserved in
        `_refilling` until it is in the table)."""
        token = new_token()
        now = _now()
        reserved = True
        try:
            desktop = self._create(*self.settings.pool_size, office=None, pooled=True, created_at=now,
                                   expires_at=now + timedelta(seconds=self.settings.max_ttl_s), idle_timeout_s=None,
                                   labels={}, token_digest=token_digest(token), pool_token=token)
            with self._lock:
                self._refilling -= 1
                reserved = False
            self._wait_ready(desktop)
        except ApiError as error:
            log.warning("the pool could not get another desktop: %s", error.message)
            self._stop.wait(5.0)  # no tight loop against an engine that refuses
        finally:
            if reserved:
                with self._lock:
                    self._refilling -= 1

    # -- the keeper ---------------------------------------------------------------------------

    def _keep(self) -> None:
        while not self._stop.is_set():
            try:
                self._reap()
                self._fill_pool()
            except Exception:  # the keeper must outlive any one failure
                log.exception("the fleet's keeper failed a round")
            self._wake.wait(self.settings.tick_s)
            self._wake.clear()

    def _reap(self) -> None:
        now = _now()
        with self._lock:
            desktops = list(self._desktops.values())
        for desktop in desktops:
            if desktop.status == "failed":
                if desktop.failed_at is not None and time.monotonic() - desktop.failed_at > self.settings.failed_kept_s:
                    with self._lock:
                        if self._desktops.get(desktop.id) is desktop:
                            del self._desktops[desktop.id]
                continue
            if not desktop.pooled and now >= desktop.expires_at:
                self._reap_one(desktop, "its TTL ran out")
            elif (not desktop.pooled and desktop.idle_timeout_s is not None
                  and (now - desktop.last_active_at).total_seconds() >= desktop.idle_timeout_s):
                self._reap_one(desktop, f"idle for {desktop.idle_timeout_s} s")
            elif desktop.status == "running" and self.backend.state(desktop.ref) in ("failed", "gone"):
                self._fail(desktop, "its container or Pod died")

    def _reap_one(self, desktop: Desktop, why: str) -> None:
        with self._lock:
            if self._desktops.get(desktop.id) is not desktop:
                return
            del self._desktops[desktop.id]
        self._remove_quietly(desktop.ref, why)
        log.info("reaped desktop %s: %s", desktop.id, why)

    def _fail(self, desktop: Desktop, reason: str) -> None:
        """Shown as failed for a while; what is left of it goes now."""
        desktop.status, desktop.reason, desktop.failed_at = "failed", reason, time.monotonic()
        log.warning("desktop %s failed: %s", desktop.id, reason)
        self._remove_quietly(desktop.ref, "failed")
        if desktop.pooled:
            with self._lock:
                if self._desktops.get(desktop.id) is desktop:
                    del self._desktops[desktop.id]

    def _fill_pool(self) -> None:
        with self._lock:
            pooled = sum(1 for d in self._desktops.values() if d.pooled) + self._refilling
            room = self.settings.max_desktops - len(self._desktops) - self._refilling
            wanted = min(self.settings.warm - pooled, room)
            self._refilling += max(0, wanted)
        for _ in range(max(0, wanted)):
            threading.Thread(target=self._refill, name="fleet-refill", daemon=True).start()

    # -- helpers ----------------------------------------------------------------------------

    def _save(self, desktop: Desktop) -> None:
        try:
            self.backend.save_meta(desktop.ref, desktop.meta())
        except BackendError as error:
            log.warning("desktop %s: its record could not be saved: %s", desktop.id, error)

    def _remove_quietly(self, ref: str, why: str) -> None:
        try:
            self.backend.delete(ref)
        except BackendError as error:
            log.warning("could not remove %s (%s): %s", ref, why, error)

    @staticmethod
    def _seconds_left(desktop: Desktop) -> int:
        return int((desktop.expires_at - _now()).total_seconds())

