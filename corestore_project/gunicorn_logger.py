"""gunicorn's own log lines (boot, worker exits) in corestore's text or JSON format.

gunicorn's access log stays off: HttpMetricsMiddleware writes one access line
per request through Django's logging, with the request id, in the same format.
The stack picks the class by CORESTORE_LOG_FORMAT. These classes must not load
Django's settings: gunicorn's master process creates them before the volume
plugin's WSGI module chooses its URLconf.
"""

from gunicorn import glogging

from corestore_project.logs import ContextFilter, JsonFormatter, TextFormatter


class TextLogger(glogging.Logger):
    formatter_class = TextFormatter

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(self.formatter_class())
            handler.addFilter(ContextFilter())


class JsonLogger(TextLogger):
    formatter_class = JsonFormatter
