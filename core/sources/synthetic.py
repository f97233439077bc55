"""``synthetic[:SEED]``: an endless gesture scene from :mod:`dvsapp.core.synth`, paced in real time."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

from dvsapp.core.errors import SourceError
from dvsapp.core.events import Packet, SensorSize
from dvsapp.core.sources.base import Source, SourceURI

__all__ = ["SyntheticSource", "open_synthetic_source"]


class SyntheticSource(Source):
    """A rendered figure performing random gestures, through the DVS emulator.

    Parameters
    ----------
    seed : int
        Scene seed (the stream is deterministic for a seed).
    sensor_size : SensorSize
        Rendered sensor size.
    chunk_us : int
        Scene time per packet, microseconds.
    speed : float
        ``1`` paces the scene in real time (it behaves as a live sensor); ``0``
        renders as fast as possible (then it is not live: nothing is dropped).

    Attributes
    ----------
    current_class : int
        The gesture performed at the end of the last packet (0-based, ``-1`` at rest);
        the ground truth for live accuracy.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        sensor_size: SensorSize = SensorSize(128, 128),
        chunk_us: int = 10_000,
        speed: float = 1.0,
        uri: str | None = None,
    ) -> None:
        from dvsapp.core.synth import GestureStream

        if not math.isfinite(speed) or speed < 0:
            raise SourceError(f"speed {speed} must be >= 0", path=uri)
        self.stream = GestureStream(int(seed), sensor_size, chunk_us)
        super().__init__(
            self.stream.sensor_size,
            uri=uri or f"synthetic:{seed}",
            description=f"synthetic scene (seed {seed})",
        )
        self.speed = float(speed)
        self.live = self.speed > 0
        self.current_class = -1
        self.metadata = {"format": "synthetic", "camera": "synthetic", "seed": int(seed)}

    def class_at(self, t_us: int) -> int:
        """Ground truth at scene time ``t_us`` (0-based class or -1 at rest)."""
        return self.stream.class_at(t_us)

    async def _packets(self) -> AsyncIterator[Packet]:
        it = iter(self.stream)
        wall0: float | None = None
        t_ref = 0
        while not self._closed:
            events, until_us, class_id = await asyncio.to_thread(next, it)
            if self.speed > 0:
                if wall0 is None:
                    wall0, t_ref = time.monotonic(), until_us
                if self._paused:
                    wall0 += await self._wait_while_paused()
                delay = wall0 + (until_us - t_ref) / self.speed / 1e6 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.5:  # rendering fell behind: do not try to catch up
                    wall0, t_ref = time.monotonic(), until_us
            elif self._paused:
                await self._wait_while_paused()
            self.current_class = int(class_id)
            yield Packet(events, int(until_us))


def open_synthetic_source(uri: SourceURI) -> SyntheticSource:
    """Factory for ``synthetic[:SEED]?speed=1&width=128&height=128``."""
    target = uri.target or "0"
    if not target.lstrip("-").isdigit():
        raise SourceError(f"synthetic seed {target!r} is not an integer", path=uri.text)
    size = SensorSize(uri.integer("width", 128), uri.integer("height", 128))
    return SyntheticSource(int(target), sensor_size=size, speed=uri.number("speed", 1.0), uri=uri.text)
