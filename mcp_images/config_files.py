"""Reading a file the configuration names: bounded, regular files only, errors that name the setting.

A setting can point anywhere: ``MCP_IMAGES_CATALOG=/dev/zero`` once grew the server to 5 GB
while it read "the file" whole, and a FIFO would block the start for ever. So every file read
for configuration (catalog, providers, prices, the ``.env`` check) goes through
`read_config_text`: the path is stat'ed first and must be a regular file under
`MAX_CONFIG_FILE_BYTES`; it is opened non-blocking, checked again on the open descriptor (the
path may have been swapped in between), and at most the limit plus one byte is read, so a file
that grows meanwhile is refused too. Our own data files are 20-60 KB; 4 MiB is ample.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mcp_images.errors import ConfigError
from mcp_images.units import format_bytes

__all__ = ["MAX_CONFIG_FILE_BYTES", "check_config_file", "read_config_text"]

MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024  # the built-in catalog, prices and providers are under 64 KB
# A FIFO opened for reading without O_NONBLOCK waits for a writer; not every OS has the flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _refuse_mode(mode: int, size: int, named: str, limit: int) -> None:
    """Raise unless ``mode`` and ``size`` describe a regular file within ``limit``."""
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{named} is a folder; give the path of a file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{named} is not a regular file (a device, FIFO or socket); give the path of a file")
    if size > limit:
        raise ConfigError(f"{named} is {format_bytes(size)}; a configuration file may be at most {format_bytes(limit)}")


def check_config_file(path: Path, *, setting: str, what: str = "file", limit: int = MAX_CONFIG_FILE_BYTES) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes, without opening it.

    For files another library reads (the ``.env`` file): check first, then let it read.

    Raises:
        ConfigError: it is missing, unreadable, not a regular file, or too large; the message
            names ``setting`` (``MCP_IMAGES_CATALOG``) and says what is wrong.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{setting}: cannot read {what} {path}: there is no such file") from None
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {what} {path}: {exc.strerror}") from exc
    _refuse_mode(info.st_mode, info.st_size, f"{setting}: {what} {path}", limit)


def read_config_text(path: Path, *, setting: str, what: str = "file", limit: int = MAX_CONFIG_FILE_BYTES) -> str:
    """The UTF-8 text of the configuration file at ``path``, read with a bound.

    ``setting`` names where the path came from as a person set it: the variable
    (``MCP_IMAGES_CATALOG``). ``what`` says what the file is (``catalog file``); both go
    into every message: ``MCP_IMAGES_CATALOG: catalog file /dev/zero is not a regular file ...``.

    Raises:
        ConfigError: it is missing, unreadable, not a regular file, larger than ``limit``
            bytes (before or while it is read), or not UTF-8; the message names ``setting``.
    """
    check_config_file(path, setting=setting, what=what, limit=limit)
    named = f"{setting}: {what} {path}"
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {what} {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        _refuse_mode(info.st_mode, info.st_size, named, limit)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{named} grew past {format_bytes(limit)} while it was read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{named} is not UTF-8 text (byte {exc.start} is not valid); save it as UTF-8") from exc
