"""What the browser toolset may reach: addresses (`URLRules`) and desktop files (`DesktopFilePolicy`).

`URLRules` is both the SDK's `url_policy` (checked on every `navigate`, with the URL as the
model wrote it) and the browser's request guard: CubicleBrowser aborts every request whose
URL it denies before it leaves Chromium, so a link the model clicks, a redirect or a page's
own script cannot load a denied address either.

`DesktopFilePolicy` is the SDK's `file_policy` for paths on the desktop, where Chromium runs
and reads the files: they do not exist where this code runs, so the check is on the text of
the path. The desktop's own CUBICLE_FILES_ROOT, if set, is the boundary that resolves symlinks.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from anthropic.tools import ToolError
from anthropic.tools.browser import BetaURLContext, UploadRefusedError

__all__ = ["DesktopFilePolicy", "URLRules", "navigable_url"]

_SCHEME = re.compile(r"^(https?|file|about|data|blob|chrome|view-source|ftp|wss?|javascript):", re.IGNORECASE)
_LOCAL_HOST = re.compile(r"^(localhost|127(\.\d+){3}|\[::1\]|0\.0\.0\.0)(:\d+)?([/?#]|$)", re.IGNORECASE)
_ALWAYS_ALLOWED = ("about:blank", "about:srcdoc")
_HOSTLESS = ("data:", "blob:", "about:")


def navigable_url(url: str) -> str:
    """The address a navigate goes to: as written when it has a scheme; else https://, or
    http:// for this machine's own addresses (localhost, 127.x, [::1])."""
    url = url.strip()
    if _SCHEME.match(url):
        return url
    return ("http://" if _LOCAL_HOST.match(url) else "https://") + url.lstrip("/")


class URLRules:
    """Which addresses the browser may load.

    Each entry of `allow` and `deny` is a URL prefix when it holds "://" (or starts with a
    scheme such as "data:" or "file:"), compared with the start of the URL ("https://example.com/docs/"),
    else a host pattern: a host name or address with `*` wildcards and an optional port
    ("example.com" is that host only, "*.example.com" its subdomains, "127.0.0.1:8000").
    A URL is refused when a deny entry matches it, or when there is an allow list and no allow
    entry matches it. about:blank is always allowed (a new tab is that page), and data:, blob:
    and about: URLs, which reach no host, need no allow entry (a deny entry still refuses them).
    """

    def __init__(self, allow: Sequence[str] = (), deny: Sequence[str] = ()):
        if isinstance(allow, str) or isinstance(deny, str):
            raise TypeError("allow and deny are lists of entries, not single strings")
        self.allow = tuple(entry.strip() for entry in allow if entry.strip())
        self.deny = tuple(entry.strip() for entry in deny if entry.strip())

    def denies(self, url: str) -> bool:
        if url in _ALWAYS_ALLOWED:
            return False
        if any(_matches(entry, url) for entry in self.deny):
            return True
        if url[:6].lower().startswith(_HOSTLESS):
            return False
        return bool(self.allow) and not any(_matches(entry, url) for entry in self.allow)

    def __call__(self, context: BetaURLContext, url: str) -> None:
        """The SDK's url_policy: refuses a navigate to a denied address before it starts."""
        if self.denies(navigable_url(url)):
            raise ToolError(refusal(url))


def refusal(url: str) -> str:
    return f"{url[:300]} is not allowed here (this browser's URL rules refuse it); do not try to reach it another way."


def _matches(entry: str, url: str) -> bool:
    if "://" in entry or _SCHEME.match(entry):
        return _normal_prefix(url).startswith(_normal_prefix(entry))
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False
    if not host:
        return False
    pattern_host, _, pattern_port = entry.lower().rpartition(":") if _has_port(entry) else (entry.lower(), "", "")
    if pattern_port:
        default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme.lower())
        if str(port or default) != pattern_port:
            return False
    return fnmatch.fnmatchcase(host, pattern_host.strip("[]"))


def _has_port(entry: str) -> bool:
    head, colon, tail = entry.rpartition(":")
    return bool(colon) and tail.isdigit() and (not head.count(":") or head.endswith("]"))


def _normal_prefix(url: str) -> str:
    """Scheme and host in lower case, the rest as written."""
    scheme, sep, rest = url.partition(":")
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        return f"{scheme.lower()}://{host.lower()}{slash}{path}"
    return f"{scheme.lower()}{sep}{rest}"


class DesktopFilePolicy:
    """Which desktop files `file_upload` may send: absolute paths, without a `..` part, under one
    of `roots` (default: the desktop user's home, which CubicleBrowser fills in), and never the
    browser's own profile (its cookies and saved logins). Refusals do not list the roots.
    Download paths reach the model only with `expose_download_paths=True` and under the roots.
    """

    def __init__(self, roots: Sequence[str] | None = None, *, expose_download_paths: bool = False):
        if isinstance(roots, str):
            raise TypeError("roots is a list of folders, not a single folder")
        self._roots: tuple[str, ...] | None = None
        self._excluded: tuple[str, ...] = ()
        if roots is not None:
            self._roots = tuple(_absolute_folder(root) for root in roots)
        self.expose_download_paths = expose_download_paths is True

    @property
    def roots(self) -> tuple[str, ...] | None:
        """The folders uploads may come from; None until the desktop user's home is known."""
        return self._roots

    def bind_desktop(self, home: str, browser_profile: str) -> None:
        """What only the desktop knows: its user's home (the default root) and the profile
        of its Chromium (never uploaded)."""
        if self._roots is None:
            self._roots = (_absolute_folder(home),)
        self._excluded = (_absolute_folder(browser_profile),)

    def resolve_upload_paths(self, context: BetaURLContext, paths: Sequence[str]) -> list[str]:
        if self._roots is None:
            raise UploadRefusedError("file_upload cannot check paths yet (the desktop's home is not known)")
        return [self._checked(path) for path in paths]

    def resolve_upload_documents(self, context: BetaURLContext, document_ids: Sequence[str]) -> list[str]:
        raise UploadRefusedError("file_upload on this desktop takes paths of files on the desktop, not document ids")

    def is_path_visible(self, path: str) -> bool:
        if not self.expose_download_paths or self._roots is None:
            return False
        try:
            self._checked(path)
        except ToolError:
            return False
        return True

    def _checked(self, path: str) -> str:
        if not isinstance(path, str) or not path or "\0" in path or len(path) > 4096:
            raise UploadRefusedError("file_upload path is empty, too long or contains a NUL byte")
        if not path.startswith("/"):
            raise UploadRefusedError(f"file_upload paths are absolute paths on the desktop; {path[:200]!r} is not")
        if ".." in path.split("/"):
            raise UploadRefusedError("file_upload path must not contain a '..' component")
        normal = "/" + posixpath.normpath(path).lstrip("/")
        if any(_within(normal, folder) for folder in self._excluded):
            raise UploadRefusedError("file_upload may not send the browser's own profile")
        if not any(_within(normal, root) for root in self._roots or ()):
            raise UploadRefusedError("file_upload path is outside the folders this desktop allows uploads from")
        return normal


def _absolute_folder(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"upload roots are absolute folders on the desktop, not {path!r}")
    return "/" + posixpath.normpath(path).lstrip("/")


def _within(path: str, folder: str) -> bool:
    return folder == "/" or path == folder or path.startswith(folder.rstrip("/") + "/")
