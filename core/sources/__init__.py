"""Async event sources behind one URI scheme.

``open_source(uri)`` returns a :class:`Source`: an async iterator of
:class:`~dvsapp.core.events.Packet` with ``sensor_size`` and ``live``.  See
:mod:`dvsapp.core.sources.base` for the stream contract.

==========================  ==============================================================
URI                         source
==========================  ==============================================================
``file:PATH?speed=1&loop=0`` a recording, paced x speed (``0`` = as fast as possible); a bare path works too
``dv://HOST:PORT``           a live AEDAT4 network stream (DV software, dv-processing ``NetworkWriter``)
``inivation[:SERIAL]``       a USB event camera through dv-processing
``webcam[:INDEX]``           an OpenCV camera through the DVS emulator
``synthetic[:SEED]``         the endless synthetic gesture scene, paced in real time
==========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable

from dvsapp.core.errors import SourceError
from dvsapp.core.sources.base import ArraySource, ReplaySource, Source, SourceURI, iter_packets, parse_uri

__all__ = [
    "ArraySource",
    "LIVE_ORDER",
    "ReplaySource",
    "SOURCES",
    "Source",
    "SourceURI",
    "iter_packets",
    "open_live_source",
    "open_source",
    "parse_uri",
]


def _file(uri: SourceURI) -> Source:
    from dvsapp.core.sources.file import open_file_source

    return open_file_source(uri)


def _dv(uri: SourceURI) -> Source:
    from dvsapp.core.sources.dv import open_dv_source

    return open_dv_source(uri)


def _inivation(uri: SourceURI) -> Source:
    from dvsapp.core.sources.camera import open_inivation_source

    return open_inivation_source(uri)


def _webcam(uri: SourceURI) -> Source:
    from dvsapp.core.sources.camera import open_webcam_source

    return open_webcam_source(uri)


def _synthetic(uri: SourceURI) -> Source:
    from dvsapp.core.sources.synthetic import open_synthetic_source

    return open_synthetic_source(uri)


SOURCES: dict[str, Callable[[SourceURI], Source]] = {
    "file": _file,
    "dv": _dv,
    "inivation": _inivation,
    "webcam": _webcam,
    "synthetic": _synthetic,
}
"""URI scheme -> factory ``(SourceURI) -> Source``."""

LIVE_ORDER: tuple[str, ...] = ("inivation", "webcam", "synthetic")
"""What ``--live`` without a source tries, in order."""


def open_source(uri: str, **params: object) -> Source:
    """Open the source named by ``uri``.

    Parameters
    ----------
    uri : str
        See the table in :mod:`dvsapp.core.sources`.
    **params
        Extra query parameters (override those in the URI), e.g. ``speed=0``.

    Raises
    ------
    SourceError
        Bad URI, unknown scheme, absent device, refused connection.
    EventFileError, UnsupportedFormat
        A ``file:`` source that cannot be opened.
    """
    parsed = parse_uri(uri)
    if params:
        merged = dict(parsed.params)
        merged.update({k.lower(): str(v) for k, v in params.items()})
        parsed = SourceURI(parsed.scheme, parsed.target, merged, parsed.text)
    factory = SOURCES.get(parsed.scheme)
    if factory is None:  # pragma: no cover - parse_uri only returns known schemes
        raise SourceError(f"unknown source scheme {parsed.scheme!r}", path=uri)
    return factory(parsed)


def open_live_source(order: tuple[str, ...] = LIVE_ORDER) -> tuple[Source, list[str]]:
    """Open the first live source that works (USB camera, webcam, synthetic scene).

    Returns
    -------
    source : Source
    tried : list of str
        One line per source that failed before it, ``"URI: reason"``.
    """
    tried: list[str] = []
    for scheme in order:
        try:
            return open_source(scheme), tried
        except SourceError as exc:
            tried.append(str(exc))
    raise SourceError("no live source works: " + "; ".join(tried))
