"""Celery glue: tasks unpack ids and call `digest` functions; no logic of their own lives here."""
