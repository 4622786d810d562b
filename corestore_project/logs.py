"""Log formats: one line per event, with the request or job id in front.

Text by default, JSON with CORESTORE_LOG_FORMAT=json. The id comes from a
context variable that the request middleware and the Celery tasks set.
"""

import contextvars
import json
import logging
import time

current_context = contextvars.ContextVar("corestore_log_context", default="-")


def printable(value) -> str:
    """The value with every control or other unprintable character %-encoded.

    For request-derived values (path, method, request id) written into a log
    line: a decoded path may hold a newline, which would start a forged line.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        char
        if char.isprintable()
        else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "replace"))
        for char in text
    )


class ContextFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "ctx"):
            record.ctx = current_context.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(ctx)s] %(message)s")


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "context": getattr(record, "ctx", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TracebackOnlyFilter(logging.Filter):
    """Keeps only the records that carry a traceback.

    For django.request: its plain "Not Found: /x" and "Service Unavailable"
    lines repeat the access line that every request already gets.
    """

    def filter(self, record):
        if record.exc_info is None:
            return False
        # Its message names the request's path, decoded: escape it too.
        if isinstance(record.args, tuple):
            record.args = tuple(
                printable(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True
