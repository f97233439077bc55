"""Live cameras: ``inivation[:SERIAL]`` (USB event camera) and ``webcam[:INDEX]`` (OpenCV + DVS emulator)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from dvsapp.core.errors import SourceError
from dvsapp.core.events import Packet, SensorSize, concat
from dvsapp.core.sources.base import Source, SourceURI
from dvsapp.core.sources.dv import dv_store_to_events

__all__ = ["InivationSource", "WebcamSource", "open_inivation_source", "open_webcam_source"]


class InivationSource(Source):
    """A DVXplorer / DAVIS / DVS128 on USB through ``dv_processing.io.camera``.

    Raises
    ------
    SourceError
        When no camera is attached (or the named serial is absent), instead of crashing.
    """

    live = True

    def __init__(
        self, serial: str = "", *, uri: str | None = None, poll_s: float = 0.001, camera=None
    ) -> None:
        text = uri or ("inivation:" + serial if serial else "inivation")
        self._unplugged: SourceError | None = None
        if camera is not None:  # an already open device (or a stand-in, for tests)
            self._camera = camera
        else:
            self._camera = self._open(serial, text)
        size = self._camera.getEventResolution()
        if size is None:
            raise SourceError("the camera has no event output", path=text)
        name = str(self._camera.getCameraName())
        super().__init__(SensorSize(int(size[0]), int(size[1])), uri=text, description=name)
        self.metadata = {"format": "inivation-usb", "camera": name}
        self.poll_s = poll_s

    @staticmethod
    def _open(serial: str, text: str):
        import dv_processing as dv

        try:
            found = list(dv.io.camera.discover())
        except Exception as exc:
            raise SourceError(f"cannot list USB cameras: {exc}", path=text) from None
        if not found:
            raise SourceError("no iniVation camera is connected", path=text)
        try:
            return dv.io.camera.open(serial) if serial else dv.io.camera.open()
        except Exception as exc:
            what = f"camera {serial!r}" if serial else "the camera"
            raise SourceError(f"cannot open {what}: {str(exc).split(' [')[0]}", path=text) from None

    def _read_some(self, max_wait_s: float = 0.02):
        """Event batches of the camera (worker thread); ``SourceError`` once it is unplugged."""
        camera = self._camera
        if camera is None:
            return []
        if self._unplugged is not None:
            raise self._unplugged
        parts = []
        deadline = time.monotonic() + max_wait_s
        while True:
            try:
                store = camera.getNextEventBatch()
                running = camera.isRunning() if store is None or not len(store) else True
            except Exception as exc:  # the driver reports an unplugged device as a runtime error
                self._unplugged = SourceError(
                    f"the camera was disconnected ({str(exc).split(' [')[0]})", path=self.uri
                )
                if parts:  # deliver what came before the plug was pulled; raise at the next read
                    return parts
                raise self._unplugged from None
            if store is not None and len(store):
                parts.append(dv_store_to_events(store))
                continue
            if parts or time.monotonic() >= deadline:
                return parts
            if not running:
                raise SourceError("the camera was disconnected (unplugged?)", path=self.uri)
            time.sleep(self.poll_s)

    async def _packets(self) -> AsyncIterator[Packet]:
        held = None
        while not self._closed:
            parts = await asyncio.to_thread(self._read_some)
            if self._paused or not parts:
                continue
            events = concat(([held] if held is not None else []) + parts)
            t = events["t"]
            cut = int(np.searchsorted(t, t[-1], side="left"))
            held = events[cut:]
            if cut:
                yield Packet(events[:cut], int(t[-1]))

    def close(self) -> None:
        self._camera = None
        super().close()


class WebcamSource(Source):
    """An OpenCV camera whose frames go through the DVS emulator (:class:`dvsapp.core.emulator.DvsEmulator`).

    Parameters
    ----------
    index : int
        OpenCV camera index.
    width, height : int or None
        Resize frames to this size before emulation (default: the camera's own size).
    threshold : float
        Emulator contrast threshold (log intensity).
    """

    live = True

    def __init__(
        self,
        index: int = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        threshold: float = 0.2,
        uri: str | None = None,
        seed: int = 0,
    ) -> None:
        import cv2

        from dvsapp.core.emulator import DvsEmulator

        text = uri or f"webcam:{index}"
        try:  # OpenCV's own warnings about an absent camera would only repeat our one line
            previous = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:  # pragma: no cover - builds without the logging module
            previous = None
        try:
            cap = cv2.VideoCapture(int(index))
        finally:
            if previous is not None:
                cv2.utils.logging.setLogLevel(previous)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"no webcam at index {index}", path=text)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"webcam {index} gives no frames", path=text)
        self._cap = cap
        h, w = frame.shape[:2]
        self._resize = None
        if width and height and (int(width), int(height)) != (w, h):
            self._resize = (int(width), int(height))
            w, h = self._resize
        self._emulator = DvsEmulator(w, h, threshold=threshold, seed=seed)
        super().__init__(SensorSize(w, h), uri=text, description=f"webcam {index} (emulated DVS)")
        self.metadata = {"format": "webcam", "camera": f"webcam:{index}"}
        self._t0 = time.monotonic()

    def _next_events(self) -> tuple[np.ndarray, int] | None:
        import cv2

        ok, frame = self._cap.read()
        if not ok or frame is None:
            return None
        t_us = int((time.monotonic() - self._t0) * 1e6)
        if self._resize is not None:
            frame = cv2.resize(frame, self._resize, interpolation=cv2.INTER_AREA)
        return self._emulator.step(frame, t_us), t_us

    async def _packets(self) -> AsyncIterator[Packet]:
        while not self._closed:
            got = await asyncio.to_thread(self._next_events)
            if got is None:
                raise SourceError("the webcam stopped giving frames", path=self.uri)
            events, t_us = got
            if not self._paused:
                yield Packet(events, t_us + 1)

    def close(self) -> None:
        if getattr(self, "_cap", None) is not None:
            self._cap.release()
            self._cap = None
        super().close()


def open_inivation_source(uri: SourceURI) -> InivationSource:
    """Factory for ``inivation[:SERIAL]``."""
    return InivationSource(uri.target, uri=uri.text)


def open_webcam_source(uri: SourceURI) -> WebcamSource:
    """Factory for ``webcam[:INDEX]?width=W&height=H&threshold=0.2``."""
    target = uri.target or "0"
    if not target.isdigit():
        raise SourceError(f"webcam index {target!r} is not a number", path=uri.text)
    width = uri.integer("width", 0) or None
    height = uri.integer("height", 0) or None
    return WebcamSource(
        int(target), width=width, height=height, threshold=uri.number("threshold", 0.2), uri=uri.text
    )
