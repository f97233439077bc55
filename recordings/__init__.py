"""The bundled sample recording (package data ``dvsapp.recordings``), made by ``make_recordings.py``."""
