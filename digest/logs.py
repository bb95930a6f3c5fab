"""Log output of the long-running commands (`digest run`, `digest serve`).

Two formats on stderr:

* ``text``: ``2025-03-30T07:00:01Z INFO digest.schedule: send-digest: ... (1.2 s)``
* ``json``: one object per line for log collectors, with ``time`` (UTC, ISO
  8601), ``level``, ``logger``, ``message``, every field passed with
  ``extra=`` (``job``, ``duration``, ``outcome`` ...) and ``exception`` when
  there is a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(log_format: str = "text", level: int = logging.INFO,
                  stream: IO[str] | None = None) -> None:
    """Send every log record at `level` and above to `stream` (stderr) in `log_format`.

    Replaces the handlers of the root logger. APScheduler's own chatter
    ("Added job", "Running job") is kept below WARNING unless `level` is DEBUG;
    its warnings (a run skipped as missed) still show.
    """
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("digest").setLevel(logging.NOTSET)
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level <= logging.DEBUG
                                              else logging.WARNING)
