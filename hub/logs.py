"""The hub's log lines: plain text (the default), or with ``HUB_LOG_FORMAT=json`` one JSON object a line for a log
pipeline (Loki, Elasticsearch, Cloud Logging): ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, an
exception's traceback as ``exc_info``, and an access record's ``client``, ``method``, ``path``, ``http_version`` and
``status`` as fields of their own. The same formatter serves Django's loggers (``LOGGING``, ``hub/settings.py``),
uvicorn's and its access log (``uvicorn_config``, given to ``uvicorn.run`` by ``manage.py serve``), and the Celery
worker's records (it then leaves the root logger to ``LOGGING``; its start banner is printed unless ``--quiet``).
python-json-logger writes the objects.

Imports nothing of Django's: the settings name the formatter by its path."""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonLines(JsonFormatter):
    """A record as one JSON object (``time``, ``level``, ``logger``, ``message``; uvicorn's access records with their
    request's fields)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_data, record, message_dict)
        # uvicorn's access log: "%s - "%s %s HTTP/%s" %d" % (client, method, path, version, status)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            log_data.update(zip(_ACCESS_FIELDS, record.args, strict=True))


def formatter(fmt: str) -> dict:
    """``LOGGING``'s formatter for ``HUB_LOG_FORMAT``."""
    if fmt == "json":
        return {"()": "hub.logs.JsonLines"}
    return {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}


def uvicorn_config(fmt: str) -> dict | None:
    """uvicorn's ``log_config`` for ``HUB_LOG_FORMAT`` (None: uvicorn's own, for plain text): its records and access
    log as JSON lines, on stderr and stdout as uvicorn writes them."""
    if fmt != "json":
        return None
    handler = {"class": "logging.StreamHandler", "formatter": "json"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "hub.logs.JsonLines"}},
        "handlers": {"default": {**handler, "stream": "ext://sys.stderr"},
                     "access": {**handler, "stream": "ext://sys.stdout"}},
        "loggers": {"uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
                    "uvicorn.error": {"level": "INFO"},
                    "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False}},
    }  # fmt: skip
