"""Single output files (``-o FILE``, ``--plot FILE``): checked before the work, written whole or not at all.

:func:`check_target` runs before any search, so a path that cannot be written costs the user
nothing: it refuses an empty name, anything at the path that is not a regular file (a
folder, a device such as ``/dev/null``, a fifo, a symlink -- even one to ``/dev/stdout``),
a missing or read-only folder and a name longer than the file system allows, and it
creates and removes a temporary file in the folder to prove it can.

:func:`replace_atomically` writes a temporary file in the same folder and renames it over
the target (``os.replace``), so a reader sees the old file or the new one, never half of
one. The temporary name is a short fixed prefix and a random part, whatever the target's
name, so a legal 255-byte name cannot give an illegal temporary one. A new file gets the
mode ``open()`` would give it (0o666 less the umask); a replaced file keeps its mode.

Every failure is an :class:`~topologies.errors.InputError` naming the file.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from topologies.errors import InputError

TEMP_PREFIX = ".plan-search-"
_KINDS = ((stat.S_ISDIR, "is a folder; give a file name"),
          (stat.S_ISCHR, "is a character device, not a regular file"),
          (stat.S_ISBLK, "is a block device, not a regular file"),
          (stat.S_ISFIFO, "is a fifo, not a regular file"),
          (stat.S_ISSOCK, "is a socket, not a regular file"))


def _folder(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _temp_suffix(target: Path) -> str:
    """The target's extension when short (some writers pick the format by it), else ``.tmp``."""
    suffix = target.suffix
    return suffix if 1 < len(suffix) <= 12 else ".tmp"


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_target(path: str, *, flag: str = "--output") -> None:
    """Refuse, before any work, an output path that cannot be written as a regular file."""
    if not path:
        raise InputError("is empty; give a file name", source=flag)
    target = Path(path)
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"cannot be written: {e.strerror}", source=path) from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InputError("is a symbolic link; give the path of a regular file (or a new name)", source=path)
        for test, why in _KINDS:
            if test(st.st_mode):
                raise InputError(why, source=path)
    folder = _folder(target)
    if not folder.is_dir():
        raise InputError("folder does not exist", source=path)
    if len(os.fsencode(target.name)) > _name_max(folder):
        raise InputError(f"file name is longer than the {_name_max(folder)} bytes the file system allows",
                         source=path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"folder {str(folder)!r} is not writable", source=path)
    try:  # os.access cannot see read-only mounts, full disks or pseudo file systems such as /proc
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=_temp_suffix(target))
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise InputError(f"cannot write in its folder: {e.strerror}", source=path) from None


def _new_file_mode() -> int:
    """What ``open(path, 'w')`` would give a new file: 0o666 less the process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def replace_atomically(path: str, write: Callable[[str], None], *, flag: str = "--output") -> None:
    """Call ``write(temp_path)``, then rename the temp file over ``path``: whole or not at all."""
    check_target(path, flag=flag)
    target = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = _new_file_mode()
    except OSError as e:
        raise InputError(f"cannot be written: {e.strerror}", source=path) from None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=_folder(target), prefix=TEMP_PREFIX, suffix=_temp_suffix(target))
        os.close(fd)
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
    except OSError as e:
        why = "no space left on the device" if e.errno == errno.ENOSPC else e.strerror or str(e)
        raise InputError(f"cannot be written: {why}", source=path) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str, text: str, *, flag: str = "--output") -> None:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    replace_atomically(path, write, flag=flag)
