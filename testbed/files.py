"""Read the files a scenario names (the scenario itself, ``{file: ...}`` address lists) with bounds.

A path is something a user (or a scenario someone sent them) chose, so it may be a symlink to
``/dev/zero`` (read without bound it grew to 5.4 GB), a FIFO (``read`` blocks for ever), a
directory or a device whose ``open`` has side effects.  Only regular files are read, after
following symlinks, up to a stated size:

- ``os.stat`` first, so a FIFO or device is refused without being opened at all;
- then ``open`` with ``O_NONBLOCK`` and ``fstat`` of what was really opened, so a file swapped for a
  FIFO in between can neither block the open nor be read;
- then at most ``limit + 1`` bytes, so a file that grows after the ``fstat`` is still refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["MAX_LIST_FILE_BYTES", "MAX_SCENARIO_BYTES", "InputFileError", "read_text_file"]

MAX_SCENARIO_BYTES = 1024 * 1024
"""A scenario file (1 MiB; the shipped ones are under 4 KiB)."""
MAX_LIST_FILE_BYTES = 16 * 1024 * 1024
"""An address-list file (16 MiB: about a million CIDRs, each held in memory by the censor)."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class InputFileError(ValueError):
    """A file that was refused or could not be read; the message says why but not which file
    (callers put the path, and the key that named it, in front)."""


def read_text_file(path: str | Path, *, limit: int) -> str:
    """The UTF-8 text of the regular file at ``path`` (symlinks followed), at most ``limit`` bytes."""
    try:
        _check_kind(os.stat(path), limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputFileError("no such file") from None
    except PermissionError:
        raise InputFileError("permission denied") from None
    except OSError as exc:
        raise InputFileError(f"cannot read: {exc.strerror or exc}") from None
    try:
        _check_kind(os.fstat(fd), limit)  # what was opened, in case the path changed since the stat
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputFileError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise InputFileError(_too_large(size, limit, grew=True))
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not UTF-8 text (byte {exc.start})") from None


def _check_kind(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise InputFileError(f"is {kind}; only regular files are read")
    if st.st_size > limit:
        raise InputFileError(_too_large(st.st_size, limit, grew=False))


def _too_large(size: int, limit: int, *, grew: bool) -> str:
    what = "grew past" if grew else f"is {size} bytes, more than"
    return f"{what} the limit of {limit} bytes ({limit // (1024 * 1024)} MiB)"
