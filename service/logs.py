"""Log output of the service: plain text lines, or one JSON object per line (``ECGK_LOG_FORMAT=json``).

A JSON line holds ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` and ``pid``; an access line
(``service.access``) adds ``request_id``, ``method``, ``route`` (the template, never the path with its ids),
``status``, ``latency_ms`` and ``model_version``. Nothing that identifies a patient or a caller is logged.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

ACCESS_FIELDS = ("request_id", "method", "route", "status", "latency_ms", "model_version")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the access fields a record carries (``extra=``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        line.update({name: getattr(record, name) for name in ACCESS_FIELDS if hasattr(record, name)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_config(level: str, log_format: str) -> dict[str, object]:
    """A ``logging.config.dictConfig`` for the service: every logger (uvicorn's too) through one handler,
    ``plain`` or ``json``. ``ecgk serve`` passes it to uvicorn, which applies it in every worker process; as
    a file it is uvicorn's ``--log-config``."""
    formatter = {"()": f"{__name__}.JsonFormatter"} if log_format == "json" else {"format": PLAIN_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"service": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "service"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")}
        | {"uvicorn.access": {"handlers": [], "propagate": False}},
    }
