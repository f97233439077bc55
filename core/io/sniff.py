"""Format detection from a file's first bytes (the extension only breaks ties).

Each format has a key used by the reader registry in ``dvsapp.core.io``:

=============  ==============================================================
key            signature
=============  ==============================================================
``aedat4``     ``#!AER-DAT4.0``
``aedat31``    ``#!AER-DAT3.1`` (also 3.0)
``aedat2``     ``#!AER-DAT2.0``
``evt2``       Prophesee RAW: ``% `` header lines with ``evt 2.0`` / ``format EVT2``
``evt3``       Prophesee RAW: ``% `` header lines with ``evt 3.0`` / ``format EVT3``
``dat``        Prophesee DAT: ``% `` header lines (``Data file containing``...)
``hdf5``       ``\\x89HDF\\r\\n\\x1a\\n``
``npy``        ``\\x93NUMPY``
``npz``        ``PK\\x03\\x04`` (a zip archive)
``nmnist``     no header: the ``.bin`` extension (size checked by the reader)
``csv``        printable text whose first data line holds 4 numbers
=============  ==============================================================
"""

from __future__ import annotations

import re
from pathlib import Path

from dvsapp.core.errors import UnsupportedFormat
from dvsapp.core.io.base import check_input_file

SNIFF_BYTES = 1 << 16

_MAGIC = (
    (b"#!AER-DAT4.0", "aedat4"),
    (b"#!AER-DAT3.1", "aedat31"),
    (b"#!AER-DAT3.0", "aedat31"),
    (b"#!AER-DAT2.0", "aedat2"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"\x93NUMPY", "npy"),
    (b"PK\x03\x04", "npz"),
)

_COLUMN_NAMES = {"t", "ts", "timestamp", "time", "x", "y", "p", "pol", "polarity"}
_TEXT_NUMBER = re.compile(rb"^\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*$")


def prophesee_header(head: bytes) -> tuple[list[str], int]:
    """The ``% `` header lines of a Prophesee RAW/DAT file and the byte offset after them."""
    lines: list[str] = []
    pos = 0
    while pos < len(head) and head[pos : pos + 1] == b"%":
        end = head.find(b"\n", pos)
        if end < 0:
            break
        line = head[pos + 1 : end].decode("latin-1").strip()
        pos = end + 1
        if line == "end":  # EVT3 files close the header with "% end"
            lines.append(line)
            break
        lines.append(line)
    return lines, pos


def _prophesee_kind(lines: list[str]) -> str | None:
    text = "\n".join(lines).lower()
    if re.search(r"^evt\s*3", text, re.M) or "format evt3" in text:
        return "evt3"
    if re.search(r"^evt\s*2", text, re.M) or "format evt2" in text:
        return "evt2"
    if "data file containing" in text or re.search(r"^version\s+\d", text, re.M):
        return "dat"
    if re.search(r"^evt\s*4", text, re.M) or "format evt4" in text or "format evt21" in text:
        return "unsupported-evt"
    return None


def _looks_like_csv(head: bytes) -> bool:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return False
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return False
    for line in lines[:3]:
        fields = [f for f in re.split(r"[,\s;]+", line.strip()) if f]
        if len(fields) == 4 and all(_TEXT_NUMBER.match(f.encode()) for f in fields):
            return True
        if len(fields) == 4 and {f.lower() for f in fields} <= _COLUMN_NAMES:
            return True
    return False


def sniff_format(path: str | Path) -> str:
    """Return the format key of ``path`` from its bytes (see the module table).

    Raises
    ------
    UnsupportedFormat
        Missing, empty or not a file, or no known signature.
    """
    p = check_input_file(path)
    with open(p, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    for magic, key in _MAGIC:
        if head.startswith(magic):
            return key
    if head.startswith(b"#!AER-DAT"):
        version = head[9:16].split(b"\r")[0].split(b"\n")[0].decode("latin-1", "replace")
        raise UnsupportedFormat(f"AEDAT version {version} is not supported", path=p)
    if head.startswith(b"%"):
        lines, _ = prophesee_header(head)
        kind = _prophesee_kind(lines)
        if kind == "unsupported-evt":
            raise UnsupportedFormat("Prophesee RAW encoding other than EVT 2.0/3.0", path=p)
        if kind is not None:
            return kind
        if p.suffix.lower() == ".dat":
            return "dat"
        if p.suffix.lower() == ".raw":
            return "evt3" if any("evt3" in ln.lower() for ln in lines) else "evt2"
    suffix = p.suffix.lower()
    if suffix == ".bin":
        return "nmnist"  # headerless; the reader checks the 5-byte record size
    if suffix in (".csv", ".txt") or _looks_like_csv(head[:4096]):
        if _looks_like_csv(head[:4096]):
            return "csv"
        raise UnsupportedFormat("text file without 't x y p' event lines", path=p)
    raise UnsupportedFormat(
        f"unknown event file format (first bytes {head[:8]!r}, extension {suffix or 'none'!r})", path=p
    )
