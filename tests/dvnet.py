"""Test helpers for the ``dv://`` source: a real ``NetworkWriter`` in a subprocess, and a fault proxy.

Only the test's own writer and proxy listen, both on 127.0.0.1; the app under
test only connects out.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = Path(__file__).resolve().with_name("dvnet_server.py")
"""The DV test server (a real ``NetworkWriter``), run as a script."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(path: Path, port: int, *extra: str, wait_go: bool = False) -> subprocess.Popen:
    """Start a writer serving ``path`` (``python tests/dvnet_server.py``); returns once it listens.

    With ``wait_go`` it only binds after :func:`go`.
    """
    args = [sys.executable, str(SERVER), str(path), str(port), *extra]
    if wait_go:
        args.append("--go-on-stdin")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line in ("serving", "ready"), f"server did not start: {line!r}"
    return proc


def go(proc: subprocess.Popen) -> None:
    """Let a ``--go-on-stdin`` server bind its port."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "serving"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def dvsapp_command() -> list[str]:
    """The ``dvsapp`` console script of this interpreter's environment (or ``python -m dvsapp.app.cli``)."""
    script = Path(sys.executable).with_name("dvsapp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "dvsapp.app.cli"]


class FaultProxy:
    """A TCP proxy on 127.0.0.1 between a dv client and a ``NetworkWriter`` that injects faults.

    Run it in its own process (:class:`ProxyProcess`): dv-processing's
    ``NetworkReader`` holds the GIL while it connects, so a proxy thread in the
    client's process could never answer it.

    Each accepted client gets its own upstream connection to ``upstream_port``;
    bytes from the server are forwarded in chunks.  Faults (thread-safe):

    * :meth:`cut` - reset every open connection now (the server stays up);
    * :meth:`stall` - stop forwarding server bytes for a while (connections stay open);
    * :meth:`corrupt` - replace the next ``n`` forwarded bytes with random garbage;
    * :meth:`close_mid_packet` - forward only part of the next chunk, then close;
    * :meth:`refuse` - stop accepting new clients (connection refused) until :meth:`accept`.
    """

    def __init__(self, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._stall_until = 0.0
        self._garbage = 0
        self._half_close = False
        self._closed = False
        self.accepted = 0
        self.bytes_down = 0
        self._listener: socket.socket | None = None
        self.port = free_port()
        self.accept()

    # --------------------------------------------------------------- faults
    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for pair in conns:
            for s in pair:
                _reset(s)

    def stall(self, seconds: float) -> None:
        self._stall_until = time.monotonic() + seconds

    def corrupt(self, n_bytes: int) -> None:
        self._garbage = int(n_bytes)

    def close_mid_packet(self) -> None:
        self._half_close = True

    def refuse(self) -> None:
        """Close the listening socket: new connections are refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def accept(self) -> None:
        """(Re)open the listening socket on the same port."""
        if self._listener is not None:
            return
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(8)
        s.settimeout(0.1)
        self._listener = s
        threading.Thread(target=self._accept_loop, args=(s,), daemon=True, name="fault-proxy").start()

    def close(self) -> None:
        self._closed = True
        self.refuse()
        self.cut()

    # ------------------------------------------------------------- plumbing
    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closed and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(0.05)
            client.settimeout(0.05)
            with self._lock:
                self._conns.append((client, upstream))
            self.accepted += 1
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(client, upstream), daemon=True).start()

    def _alive(self, pair) -> bool:
        with self._lock:
            return pair in self._conns

    def _drop(self, pair) -> None:
        with self._lock:
            if pair in self._conns:
                self._conns.remove(pair)
        for s in pair:
            _reset(s)

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client -> server bytes (the dv handshake), forwarded as they come."""
        pair = (client, upstream)
        while self._alive(pair):
            try:
                data = client.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                upstream.sendall(data)
            except OSError:
                break
        self._drop(pair)

    def _down(self, client: socket.socket, upstream: socket.socket) -> None:
        """Server -> client bytes, where the faults happen."""
        pair = (client, upstream)
        while self._alive(pair):
            if time.monotonic() < self._stall_until:
                time.sleep(0.01)  # stalled: hold the bytes in the kernel buffers
                continue
            try:
                data = upstream.recv(16384)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if self._garbage > 0:
                k = min(self._garbage, len(data))
                garbage = bytes(self._rng.randrange(256) for _ in range(k))
                data = garbage + data[k:]
                self._garbage -= k
            if self._half_close and len(data) > 8:
                self._half_close = False
                with contextlib.suppress(OSError):
                    client.sendall(data[: len(data) // 2])
                    self.bytes_down += len(data) // 2
                break
            try:
                client.sendall(data)
            except OSError:
                break
            self.bytes_down += len(data)
        self._drop(pair)


def _reset(s: socket.socket) -> None:
    """Close ``s`` with a TCP reset (no graceful FIN), as a dying peer or a cut cable looks."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        s.close()


class ProxyProcess:
    """A :class:`FaultProxy` in a subprocess (``python tests/dvnet.py UPSTREAM_PORT``), driven over stdin.

    Methods mirror the proxy's faults: ``cut()``, ``stall(s)``, ``corrupt(n)``,
    ``close_mid_packet()``, ``refuse()``, ``accept()``; ``stats()`` returns
    ``(accepted, bytes_down)``.
    """

    def __init__(self, upstream_port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(upstream_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "port", f"proxy did not start: {line!r}"
        self.port = int(line[1])

    def _send(self, *words) -> str:
        self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def cut(self) -> None:
        self._send("cut")

    def stall(self, seconds: float) -> None:
        self._send("stall", seconds)

    def corrupt(self, n_bytes: int) -> None:
        self._send("corrupt", n_bytes)

    def close_mid_packet(self) -> None:
        self._send("half")

    def refuse(self) -> None:
        self._send("refuse")

    def accept(self) -> None:
        self._send("accept")

    def stats(self) -> tuple[int, int]:
        accepted, down = self._send("stats").split()
        return int(accepted), int(down)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _proxy_main(argv: list[str]) -> None:
    proxy = FaultProxy(int(argv[0]))
    print("port", proxy.port, flush=True)
    for line in sys.stdin:
        cmd, *args = line.split() or [""]
        if cmd == "cut":
            proxy.cut()
        elif cmd == "stall":
            proxy.stall(float(args[0]))
        elif cmd == "corrupt":
            proxy.corrupt(int(args[0]))
        elif cmd == "half":
            proxy.close_mid_packet()
        elif cmd == "refuse":
            proxy.refuse()
        elif cmd == "accept":
            proxy.accept()
        elif cmd == "stats":
            print(proxy.accepted, proxy.bytes_down, flush=True)
            continue
        print("ok", flush=True)
    proxy.close()


if __name__ == "__main__":
    _proxy_main(sys.argv[1:])
