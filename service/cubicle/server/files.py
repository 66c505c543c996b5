"""Reading and writing the desktop's files as the desktop user, for a model's file editor.

Paths are absolute and normalised, and every refusal says what to do instead. By default
the desktop user's own permissions are the only limit; with CUBICLE_FILES_ROOT set, every
path (symlinks resolved) must lie inside that folder. Writes are atomic: a temporary file
in the same folder replaces the old one, which keeps its permission bits.
"""

from __future__ import annotations

import errno
import getpass
import os
import stat
import tempfile
from dataclasses import dataclass

from .errors import ApiError

MAX_READ_BYTES = 10 * 1024 * 1024
MAX_DIRECTORY_ENTRIES = 1000
ROOT_VARIABLE = "CUBICLE_FILES_ROOT"


@dataclass(frozen=True)
class Entry:
    name: str
    type: str  # "file", "directory" or "other" (symlinks followed)
    size: int | None


@dataclass(frozen=True)
class FileContent:
    path: str
    size: int
    content: str


@dataclass(frozen=True)
class Listing:
    path: str
    entries: list[Entry]
    total: int
    truncated: bool


class FileAccess:
    def __init__(self, root: str | None = None):
        self.root = os.path.realpath(root) if root else None

    @classmethod
    def from_environment(cls) -> FileAccess:
        return cls(os.environ.get(ROOT_VARIABLE, "").strip() or None)

    # -- paths ---------------------------------------------------------------------------

    def check_path(self, path: str) -> str:
        """The normalised absolute path, or an ApiError saying why it cannot be used."""
        if "\0" in path:
            raise ApiError(422, "invalid_path", "The path contains a NUL character; send a plain absolute path.")
        if not path.startswith("/"):
            raise ApiError(
                422, "path_not_absolute",
                f"The path {path!r} is not absolute. Give the full path starting with '/', "
                f"e.g. {os.path.join(os.path.expanduser('~'), path or 'notes.txt')!r} (the desktop user's home is "
                f"{os.path.expanduser('~')!r}).",
            )
        normal = "/" + os.path.normpath(path).lstrip("/")  # normpath keeps a leading '//'
        if self.root is not None and not is_inside(os.path.realpath(normal), self.root):
            raise ApiError(
                403, "outside_root",
                f"{normal!r} is outside {self.root!r}, the only folder whose files this desktop lets you read "
                "and write (symlinks are followed before checking).",
            )
        return normal

    # -- reading -------------------------------------------------------------------------

    def read(self, path: str) -> FileContent | Listing:
        path = self.check_path(path)
        try:
            info = os.stat(path)
            if stat.S_ISDIR(info.st_mode):
                return self._list(path)
            if not stat.S_ISREG(info.st_mode):
                raise ApiError(
                    422, "not_a_regular_file",
                    f"{path!r} is not a regular file (a device, pipe or socket); it cannot be read as text.",
                )
            if info.st_size > MAX_READ_BYTES:
                raise _too_large(path, info.st_size)
            with open(path, "rb") as handle:
                data = handle.read(MAX_READ_BYTES + 1)
        except OSError as error:
            raise _os_error(error, path, "read") from None
        if len(data) > MAX_READ_BYTES:
            raise _too_large(path, len(data))
        try:
            if b"\0" in data:
                raise ValueError("NUL byte")
            text = data.decode("utf-8")
        except ValueError:
            raise ApiError(
                422, "not_text",
                f"{path!r} is not a text file ({len(data):,} bytes that are not UTF-8 text). Inspect it with the "
                f"shell instead, e.g. `file {path}` or `xxd {path} | head`.",
            ) from None
        return FileContent(path=path, size=len(data), content=text)

    def _list(self, path: str) -> Listing:
        entries = []
        with os.scandir(path) as found:
            for item in found:
                entries.append(_entry(item))
        entries.sort(key=lambda entry: (entry.name.startswith("."), entry.name))
        shown = entries[:MAX_DIRECTORY_ENTRIES]
        return Listing(path=path, entries=shown, total=len(entries), truncated=len(entries) > len(shown))

    # -- writing -------------------------------------------------------------------------

    def write(self, path: str, content: str, create_dirs: bool = False) -> tuple[str, int]:
        """Replace (or create) the file; returns (normalised path, bytes written)."""
        path = self.check_path(path)
        data = content.encode("utf-8", errors="replace")  # lone surrogates (possible in JSON) become '?'
        if os.path.isdir(path):
            raise ApiError(
                422, "is_a_directory",
                f"{path!r} is a directory; give the path of a file inside it, e.g. {os.path.join(path, 'notes.txt')!r}.",
            )
        # Write through a symlink to its target, rather than replacing the link with a file.
        target = os.path.realpath(path) if os.path.islink(path) else path
        folder = os.path.dirname(target)
        try:
            self._prepare_folder(path, folder, create_dirs)
            _replace_atomically(target, data)
        except OSError as error:
            raise _os_error(error, path, "write") from None
        return path, len(data)

    def _prepare_folder(self, path: str, folder: str, create_dirs: bool) -> None:
        try:
            if stat.S_ISDIR(os.stat(folder).st_mode):
                return
            blocker: str | None = folder
        except FileNotFoundError:
            blocker = _blocking_file(folder)
        except NotADirectoryError:
            blocker = _blocking_file(folder) or folder
        if blocker is not None:
            raise ApiError(422, "not_a_directory", f"Cannot write {path!r}: {blocker!r} is a file, not a folder.")
        if not create_dirs:
            raise ApiError(
                404, "parent_not_found",
                f"The folder {folder!r} does not exist. Send \"create_dirs\": true to create it along with the "
                "file, or check the path.",
            )
        os.makedirs(folder, exist_ok=True)


def is_inside(path: str, root: str) -> bool:
    """Is `path` the folder `root` or inside it? Both absolute and already resolved."""
    return os.path.commonpath([path, root]) == root


def _entry(item: os.DirEntry) -> Entry:
    try:
        if item.is_dir():
            return Entry(item.name, "directory", None)
        if item.is_file():
            return Entry(item.name, "file", item.stat().st_size)
    except OSError:
        pass  # vanished meanwhile, or a link we may not follow
    return Entry(item.name, "other", None)


def _blocking_file(folder: str) -> str | None:
    """The nearest ancestor of a missing folder that exists as a file, if any."""
    current = folder
    while current != "/":
        if os.path.lexists(current) and not os.path.isdir(current):
            return current
        current = os.path.dirname(current)
    return None


def _replace_atomically(target: str, data: bytes) -> None:
    folder, name = os.path.split(target)
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except PermissionError:
        # The folder is closed to us but the file may be writable: rewrite it in place.
        if existing is None or not os.access(target, os.W_OK):
            raise
        with open(target, "wb") as handle:
            handle.write(data)
        return
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if existing is not None:
            os.chmod(temporary, stat.S_IMODE(existing.st_mode))
            try:
                os.chown(temporary, existing.st_uid, existing.st_gid)
            except PermissionError:
                pass  # only root can give a file away; the file is then ours
        else:
            os.chmod(temporary, 0o666 & ~_umask())  # what open() would have made
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _too_large(path: str, size: int) -> ApiError:
    return ApiError(
        422, "file_too_large",
        f"{path!r} is {size:,} bytes; files over {MAX_READ_BYTES:,} bytes are not read whole. Look at parts of it "
        f"with the shell, e.g. `head -n 100 {path}`, `sed -n '1000,1100p' {path}` or `grep -n WORD {path}`.",
    )


def _os_error(error: OSError, path: str, doing: str) -> ApiError:
    if isinstance(error, PermissionError) or error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = "the file system is read-only" if error.errno == errno.EROFS else f"user {_user()!r} may not {doing} it"
        return ApiError(403, "permission_denied", f"Permission denied: cannot {doing} {path!r} ({reason}).")
    if isinstance(error, FileNotFoundError):
        parent = os.path.dirname(path)
        hint = (
            f" The folder {parent!r} exists: list it to see what it holds."
            if os.path.isdir(parent) else ""
        )
        return ApiError(404, "file_not_found", f"No file or folder at {path!r}.{hint}")
    if isinstance(error, NotADirectoryError):
        blocker = _blocking_file(path) or "a part of the path"
        return ApiError(404, "file_not_found", f"No file or folder at {path!r}: {blocker!r} is a file, not a folder.")
    if isinstance(error, IsADirectoryError):
        return ApiError(422, "is_a_directory", f"{path!r} is a directory, not a file.")
    if error.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return ApiError(422, "invalid_path", f"Cannot use {path!r}: {error.strerror}.")
    if error.errno == errno.ENOSPC:
        return ApiError(507, "no_space", f"Cannot {doing} {path!r}: no space left on the device.")
    return ApiError(500, "file_error", f"Cannot {doing} {path!r}: {error.strerror or error}.")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
