"""The Qt binding the GUI runs on must not corrupt reference counts.

PySide6 6.12.0 decrements the refcount of the bool that ``Signal.emit`` returns;
on Python < 3.12 ``True``/``False`` are mortal, so a GUI session (thousands of
emits) aborts the interpreter with ``bool_dealloc``.  pyproject.toml excludes
that release; this test runs the emits in a child process and fails if the
refcounts drift or the child dies.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("PySide6")

CHILD = r"""
import gc, sys
from PySide6 import QtCore, QtWidgets
app = QtWidgets.QApplication([])
class Emitter(QtCore.QObject):
    any_ = QtCore.Signal(object)
    text = QtCore.Signal(str)
    pair = QtCore.Signal(float, float, bool)
e = Emitter()
e.any_.connect(lambda v: None)
e.text.connect(lambda v: None)
e.pair.connect(lambda a, b, c: None)
gc.collect()
before = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
for i in range(3000):
    e.any_.emit(i)
    e.text.emit("x")
    e.pair.emit(1.0, 2.0, True)
gc.collect()
after = (sys.getrefcount(True), sys.getrefcount(False), sys.getrefcount(None))
print(*[a - b for a, b in zip(after, before)])
"""


def test_signal_emit_keeps_refcounts():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"the Qt child died ({proc.returncode}): {proc.stderr.strip()[-400:]}"
    drift = [int(v) for v in proc.stdout.split()]
    assert all(abs(d) < 100 for d in drift), f"refcount drift of True/False/None after 9000 emits: {drift}"
