"""Log records as JSON lines, one object per line, for log shippers."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from core.context import current_request_id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            payload["request_id"] = request_id
        if record.exc_info:
            # The exception's type and place only: its message may quote input.
            exc_type = record.exc_info[0]
            payload["exception"] = exc_type.__name__ if exc_type else None
            payload["traceback"] = self.formatException(record.exc_info).splitlines()[-6:-1]
        return json.dumps(payload, default=str)
