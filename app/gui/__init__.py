"""The desktop GUI (PySide6 + pyqtgraph): event view, timesteps, attention taps, predictions.

Only the Qt main thread touches widgets; the pipeline runs in :mod:`dvsapp.app.gui.worker`.
Pure numpy rendering lives in :mod:`dvsapp.app.gui.render` (shared with ``--export``).
"""
