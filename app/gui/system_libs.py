"""The system libraries Qt needs to open a window, checked before Qt is imported.

PySide6 brings Qt itself, but Qt's X11 platform plugin (``libqxcb.so``) and Qt's
GUI libraries link system libraries (the xcb family, xkbcommon, EGL/GL,
fontconfig, D-Bus) that a fresh machine may lack.  Without one of them Qt prints
a hint that often names the wrong library and aborts the process (exit 134).
:func:`require_gui_libraries` reads what those files actually link (their ELF
``DT_NEEDED`` entries), tries to load each one, and raises one
:class:`~dvsapp.core.errors.ConfigError` naming the missing libraries and the
Debian/Ubuntu packages holding them.

``python -m dvsapp.app.gui.system_libs`` prints the packages to install, one a
line (``.ci/gui-deps`` installs them).  Nothing here imports Qt.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

from dvsapp.core.errors import ConfigError

PACKAGES: dict[str, str] = {
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}
"""System library (soname) -> the Debian/Ubuntu package that holds it.

What PySide6 6.x's ``libqxcb.so``, ``libQt6XcbQpa``, ``libQt6Gui``, ``libQt6Widgets``,
``libQt6Core`` and ``libQt6DBus`` link, beyond the C/C++ runtime (``ldd`` on them);
the check itself reads the files, so a library missing from this table is still found.
"""

XCB_FILES = ("plugins/platforms/libqxcb.so", "lib/libQt6XcbQpa.so.6")
"""The X11 platform plugin and its library (paths inside PySide6's ``Qt`` folder)."""

CORE_FILES = ("lib/libQt6Core.so.6", "lib/libQt6Gui.so.6", "lib/libQt6Widgets.so.6", "lib/libQt6DBus.so.6")
"""Qt libraries every platform loads (``offscreen`` too)."""

RUNTIME = (
    "libc.so",
    "libm.so",
    "libstdc++.so",
    "libgcc_s.so",
    "ld-linux",
    "libpthread.so",
    "libdl.so",
    "librt.so",
)
"""The C/C++ runtime: present wherever Python runs."""


def elf_needed(path: str | os.PathLike) -> list[str]:
    """The ``DT_NEEDED`` sonames of a 64-bit little-endian ELF file (``[]`` if it is not one).

    Reads only the header, the section table, the dynamic section and its strings.
    """
    try:
        with open(path, "rb") as fh:

            def read(offset: int, size: int) -> bytes:
                fh.seek(offset)
                return fh.read(size)

            head = read(0, 64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return []
            (shoff,) = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            table = read(shoff, shentsize * shnum)
            sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]
            out: list[str] = []
            for _name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
                if sh_type != 6:  # SHT_DYNAMIC
                    continue
                strtab = read(sections[link][4], sections[link][5])
                dynamic = read(offset, size)
                for k in range(0, len(dynamic) - 15, entsize or 16):
                    tag, val = struct.unpack_from("<qQ", dynamic, k)
                    if tag == 0:  # DT_NULL
                        break
                    if tag == 1:  # DT_NEEDED
                        out.append(strtab[val : strtab.index(b"\0", val)].decode("ascii", "replace"))
            return out
    except (OSError, struct.error, ValueError, IndexError):
        return []


def qt_folder() -> Path | None:
    """PySide6's ``Qt`` folder, found without importing PySide6 (None when not installed)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "Qt"


@functools.lru_cache(maxsize=4)
def _needed(platform: str) -> tuple[str, ...]:
    return tuple(needed_libraries(platform))


def needed_libraries(platform: str = "xcb") -> list[str]:
    """System sonames Qt needs for ``platform`` (``"xcb"`` adds the X11 plugin's), in link order."""
    qt = qt_folder()
    files = CORE_FILES + (XCB_FILES if platform == "xcb" else ())
    names: list[str] = []
    if qt is not None:
        bundled = {p.name for p in (qt / "lib").glob("*.so*")}
        for rel in files:
            for name in elf_needed(qt / rel):
                if name in bundled or name.startswith(RUNTIME) or name in names:
                    continue
                names.append(name)
    if not names:  # not an ELF system, or an unexpected layout: the known list
        names = list(PACKAGES) if platform == "xcb" else []
    return names


def loadable(soname: str) -> bool:
    """Whether the dynamic loader finds and loads ``soname``."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(platform: str = "xcb", *, finder: Callable[[str], bool] | None = None) -> list[str]:
    """The sonames of :func:`needed_libraries` that do not load (``finder`` defaults to :func:`loadable`)."""
    finder = finder or loadable
    return [name for name in _needed(platform) if not finder(name)]


def packages_for(sonames: list[str]) -> list[str]:
    """Debian/Ubuntu packages holding ``sonames`` (unknown ones as ``?soname``), without repeats."""
    out: list[str] = []
    for name in sonames:
        pkg = PACKAGES.get(name, f"?{name}")
        if pkg not in out:
            out.append(pkg)
    return out


def qt_platform() -> str:
    """The Qt platform plugin a window would use: ``$QT_QPA_PLATFORM``'s first name, else ``xcb`` on Linux."""
    value = os.environ.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if value:
        return value
    return "xcb" if sys.platform.startswith("linux") else "native"


def require_gui_libraries(*, finder: Callable[[str], bool] | None = None) -> None:
    """Raise one :class:`ConfigError` line naming the system libraries Qt would fail to load.

    Checked on Linux only (elsewhere PySide6 brings what it needs); the X11 plugin's
    libraries only when the window would open through it.
    """
    if not sys.platform.startswith("linux") or qt_folder() is None:
        return
    platform = qt_platform()
    missing = missing_libraries("xcb" if platform == "xcb" else "core", finder=finder)
    if not missing:
        return
    packages = " ".join(p for p in packages_for(missing) if not p.startswith("?"))
    install = f" (Debian/Ubuntu: apt-get install {packages}, or `bash .ci/gui-deps`)" if packages else ""
    raise ConfigError(
        f"the GUI ({platform} platform) needs system libraries that are missing: {', '.join(missing)}{install}"
    )


def main() -> int:
    """Print the Debian/Ubuntu packages of the missing GUI libraries, one a line."""
    for pkg in packages_for(missing_libraries("xcb")):
        print(pkg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
