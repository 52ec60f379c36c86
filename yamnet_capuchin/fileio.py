"""File output at the edges: atomic writes (no half-written file survives an error or an
interrupt; files get the permissions the umask allows, like any other new file), checks that
outputs can be written before work starts, a lock for output folders, content hashing, and
listing audio files."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import YamcapError

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".opus", ".w64", ".caf"}


LOCK_NAME = ".yamcap-lock"
# errors of the disk rather than of the caller's code while a temporary file is being written
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM}


class OutputError(YamcapError):
    """An output cannot be written; the message names the output and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def current_umask() -> int:
    """The process umask, read without changing it where the system says it (Linux), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and
    ``path`` is left as it was. The file ends up with the mode a plainly created file would
    have (``0o666 & ~umask``), not ``mkstemp``'s 0o600. Failing to create, fill (disk full,
    read-only, no permission) or rename the file raises :class:`OSError` whose ``filename``
    is ``path`` itself, not the temporary file (see :func:`as_output_error`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, _dir_reason(path.parent, exc), str(path)) from None
    tmp_path = Path(tmp)
    try:
        try:
            os.fchmod(fd, new_file_mode())
        finally:
            os.close(fd)
        try:
            yield tmp_path
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS and exc.filename in (None, str(tmp_path), tmp_path):
                raise OSError(exc.errno, _reason(exc), str(path)) from None
            raise
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise OSError(exc.errno, "is a directory" if path.is_dir() else _reason(exc), str(path)) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def as_output_error(exc: OSError, path: str | Path | None = None) -> OutputError:
    """An OSError met while writing an output, as one line naming the output."""
    return OutputError(path if path is not None else (exc.filename or "output"), _reason(exc))


def _dir_reason(folder: Path, exc: OSError) -> str:
    blocker = _non_folder_ancestor(folder)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    return _reason(exc)


def _non_folder_ancestor(folder: Path) -> Path | None:
    """The first existing path at or above ``folder`` that is not a folder, if any."""
    for p in [folder, *folder.parents]:
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _probe_folder(folder: Path, what: Path) -> None:
    """Raise OutputError (naming ``what``) unless a file can be created in ``folder`` or,
    where it does not exist yet, in the nearest existing folder above it."""
    blocker = _non_folder_ancestor(folder)
    if blocker is not None:
        raise OutputError(what, f"{blocker} is a file, not a folder")
    existing = next(p for p in [folder, *folder.parents] if p.exists())
    try:  # a real probe: os.access says yes to root on a read-only folder, and to anyone on ro mounts
        fd, tmp = tempfile.mkstemp(prefix=".yamcap-probe.", dir=existing)
    except OSError as exc:
        raise OutputError(what, f"{existing} is not writable ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | Path) -> None:
    """Fail fast (:class:`OutputError`) when ``path`` cannot be written as a file: it is a
    folder, a folder above it is a file, or its folder is not writable. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, "is a directory (give a file name)")
    _probe_folder(path.parent, path)


def check_output_dir(folder: str | Path, subfolders: Sequence[str] = (), files: Sequence[str] = ()) -> None:
    """Fail fast (:class:`OutputError`) when ``folder`` cannot take outputs: it (or a folder
    above it) is a file, it is not writable, one of ``subfolders`` that exists is not a
    writable folder, or one of ``files`` exists as a folder. Creates nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, "is a file, not a folder")
    _probe_folder(folder, folder)
    for name in subfolders:
        sub = folder / name
        if sub.exists() or sub.is_symlink():
            if not sub.is_dir():
                raise OutputError(sub, "is a file, not a folder")
            _probe_folder(sub, sub)
    for name in files:
        if (folder / name).is_dir():
            raise OutputError(folder / name, "is a directory")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | Path, what: str = "yamcap") -> Iterator[Path]:
    """Hold ``folder/.yamcap-lock`` (created with O_CREAT|O_EXCL, holding ``PID host``) while
    the block runs; removed on exit, on an error and on Ctrl-C.

    A lock left by a process that no longer runs (on this host) is taken over; a live one
    raises :class:`OutputError`. Re-entrant within one process (an inner holder leaves the
    outer one's lock in place)."""
    folder = Path(folder)
    lock = folder / LOCK_NAME
    host = socket.gethostname()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(folder, _dir_reason(folder, exc)) from None
    owned = False
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid, lock_host = _read_lock(lock)
            if pid == os.getpid() and lock_host == host:
                break  # this process holds it already
            if pid is not None and lock_host == host and not _pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()  # stale: its process is gone
                continue
            if pid is None and not lock.exists():
                continue
            raise _locked_error(folder, lock, pid, lock_host, what) from None
        except OSError as exc:
            raise OutputError(lock, _reason(exc)) from None
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {host}\n")
            owned = True
            break
    else:
        raise OutputError(lock, "could not take the lock")
    try:
        yield lock
    finally:
        if owned:
            with contextlib.suppress(FileNotFoundError):
                if _read_lock(lock) == (os.getpid(), host):
                    lock.unlink()


def _locked_error(folder: Path, lock: Path, pid: int | None, lock_host: str | None, what: str) -> OutputError:
    host = socket.gethostname()
    holder = (f"PID {pid}" + ("" if lock_host in (None, host) else f" on {lock_host}")) if pid else "PID unknown"
    return OutputError(folder, f"in use by another {what} run ({holder}); if none is running, remove {lock}")


def check_unlocked(folder: str | Path, what: str = "yamcap") -> None:
    """Raise :class:`OutputError` if another live process holds ``folder``'s lock (a check
    before slow set-up; :func:`output_lock` is what keeps others out)."""
    lock = Path(folder) / LOCK_NAME
    if not lock.exists():
        return
    pid, lock_host = _read_lock(lock)
    host = socket.gethostname()
    if pid == os.getpid() and lock_host == host:
        return
    if pid is not None and lock_host == host and not _pid_alive(pid):
        return  # stale: output_lock takes it over
    raise _locked_error(Path(folder), lock, pid, lock_host, what)


def _read_lock(lock: Path) -> tuple[int | None, str | None]:
    try:
        parts = lock.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None, None
    except OSError:
        return None, None
    try:
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (IndexError, ValueError):
        return None, None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence], delimiter: str = ",") -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically as PNG and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _broken_audio_link(path: Path, extensions: set[str]) -> bool:
    if not path.is_symlink() or path.exists():
        return False
    try:
        target = Path(os.readlink(path))
    except OSError:
        return False
    return path.suffix.lower() in extensions or target.suffix.lower() in extensions


def expand_audio_paths(paths: Iterable[str | Path], extensions: set[str] | None = None) -> list[Path]:
    """Files as given, folders searched recursively for audio files (sorted, hidden files skipped).

    A path that does not exist is returned as is, and so is a broken symbolic link found in a
    folder (named like an audio file, or pointing at such a name), so the caller reports it as
    a failure ("broken link") instead of it vanishing from the run.
    """
    extensions = extensions or AUDIO_EXTENSIONS
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*")
                if not f.name.startswith(".")
                and ((f.is_file() and f.suffix.lower() in extensions) or _broken_audio_link(f, extensions))
            )
            out.extend(found)
        else:
            out.append(p)
    return out


@contextmanager
def staging_dir(final: str | Path):
    """A temporary directory beside ``final`` that replaces it on success (no half-written output)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # as mkdir would make it, not mkdtemp's 0o700
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
