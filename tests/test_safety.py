"""Issue 9 safety lines that no other test covers: dvsapp never listens on a network port.

The live sources only connect out (``dv://HOST:PORT`` dials the address given); a
running ``dvsapp classify --live`` is sampled for sockets in the LISTEN state.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

TCP_LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _states(pid: int) -> dict[str, str]:
    """inode -> TCP state for the sockets of ``pid`` (IPv4 and IPv6)."""
    mine = _socket_inodes(pid)
    found = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in mine:
                found[fields[9]] = fields[3]
    return found


@pytest.mark.parametrize("source", ["synthetic:1", "dv://127.0.0.1:{port}"])
def test_live_classify_never_listens(source):
    # the test (not dvsapp) listens; the dv source must dial out to it and hold the connection
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    source = source.format(port=server.getsockname()[1])
    accepted = []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dvsapp.app",
            "classify",
            "--live",
            "--source",
            source,
            "--seconds",
            "30",
            "--json",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[str, str] = {}
    settle = time.monotonic() + 4
    try:
        deadline = time.monotonic() + 25  # start-up (torch, the model) can be slow on a busy machine
        while time.monotonic() < deadline and proc.poll() is None:
            if source.startswith("dv://"):
                if accepted and time.monotonic() > settle:
                    break
            elif time.monotonic() > settle + 4:  # running for a while with its live source
                break
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass
            try:
                seen.update(_states(proc.pid))
            except FileNotFoundError:  # the process just ended
                break
            time.sleep(0.2)
    finally:
        for conn in accepted:
            conn.close()
        server.close()
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    listening = [inode for inode, state in seen.items() if state == TCP_LISTEN]
    assert not listening, f"dvsapp listened on a TCP port with source {source}"
    if source.startswith("dv://"):
        # it dialled out to the address given (its sockets there are short-lived: the test's
        # server speaks no DV protocol, so the source gives up on each connection and retries)
        assert accepted, "the dv source never connected to the address given"
