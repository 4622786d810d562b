"""GET /metrics: the node's state and traffic in Prometheus text format.

Where each number comes from, and why:

- State (services, volumes, mounts, snapshots, jobs and their durations) is
  read from the metadata database at scrape time. The API runs as two gunicorn
  workers and the jobs run in a separate Celery process: a counter kept in one
  process's memory would depend on which worker answers the scrape and would
  reset on every restart, while the database is shared by all of them and
  outlives restarts.
- Engines and processes are checked at scrape time with the /health checks.
- HTTP requests are counted where they are served, with prometheus-client's
  multiprocess mode: each gunicorn worker writes its samples to files in
  METRICS_DIR (PROMETHEUS_MULTIPROC_DIR, set on the gunicorn command line) and
  the scrape sums them. `runstack` empties that directory at every start.

Labels carry names chosen by the operator or the orchestrator (service,
volume, job kind), never a credential.
"""

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from corestore_project import health
from corestore_project.api import error_body, get_only, token_matches
from corestore_project.engines import database_engine, object_engine
from corestore_project.logs import printable
from corestore_project.metrics_state import StateCollector

access_log = logging.getLogger("corestore.access")

# Created in every process that serves HTTP; in multiprocess mode the values
# live in files, so the registry they are attached to only matters outside it.
HTTP_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "corestore_http_requests",
    "HTTP requests answered, by method, route pattern and status code.",
    ["method", "route", "status"],
    registry=HTTP_REGISTRY,
)
HTTP_LATENCY = Histogram(
    "corestore_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route pattern.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=HTTP_REGISTRY,
)

# Anything else is counted as "other": a label per invented method would let
# any client grow the metrics without bound.
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
QUIET_ROUTES = {"/health", "/metrics", "/Plugin.Activate"}


def route_of(request) -> str:
    """The URL pattern, not the path: /jobs/<id> must not make a label per job."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        # whitenoise answers static files before URL resolution.
        static = "/" + settings.STATIC_URL.lstrip("/")
        return static if request.path.startswith(static) else "unmatched"
    return "/" + (match.route or "").lstrip("^").rstrip("$")


class HttpMetricsMiddleware:
    """Counts and times every request and writes one access line for it.

    It sits outside RequestContextMiddleware so that it also sees the answers
    that one gives itself (413); the request id comes back on the response.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        response = self.get_response(request)
        elapsed = time.monotonic() - started

        route = route_of(request)
        method = request.method if request.method in KNOWN_METHODS else "other"
        HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(method, route).observe(elapsed)

        request_id = response.get("X-Request-Id", "-")
        # Health checks and scrapes come every few seconds: their successes
        # are counted above and logged only at debug level.
        quiet = route in QUIET_ROUTES and response.status_code < 400
        access_log.log(
            logging.DEBUG if quiet else logging.INFO,
            "%s %s %s %.1fms",
            printable(request.method),
            printable(request.path),
            response.status_code,
            elapsed * 1000,
            extra={"ctx": f"req:{request_id}"},
        )
        return response


class EngineCollector:
    """Engine and process state, checked at scrape time like /health does."""

    def collect(self):
        with ThreadPoolExecutor(max_workers=len(health.CHECKS) + 1) as pool:
            futures = {
                name: pool.submit(health._run, check)
                for name, check in health.CHECKS.items()
            }
            processes = pool.submit(health._safe_processes).result()
            components = {name: future.result() for name, future in futures.items()}

        up = GaugeMetricFamily(
            "corestore_component_up",
            "1 when the component answers its health check, else 0.",
            labels=["component"],
        )
        for name, state in sorted(components.items()):
            up.add_metric([name], 1 if state["status"] == "up" else 0)
        yield up

        running = GaugeMetricFamily(
            "corestore_process_running",
            "1 when supervisord reports the process as running, else 0.",
            labels=["process"],
        )
        for name, state in sorted(processes.items()):
            running.add_metric([name], 1 if state == "running" else 0)
        yield running

        info = GaugeMetricFamily(
            "corestore_engine_info",
            "The engine serving each capability (always 1).",
            labels=["capability", "engine", "embedded"],
        )
        for capability, engine in (
            ("database", database_engine()),
            ("objectstorage", object_engine()),
        ):
            info.add_metric([capability, engine.kind, str(engine.embedded).lower()], 1)
        yield info


def scrape() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector())
    registry.register(StateCollector())
    output = generate_latest(registry)

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        http_registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(http_registry)
        return output + generate_latest(http_registry)
    return output + generate_latest(HTTP_REGISTRY)


@get_only
def metrics(request):
    if not token_matches(request.META.get("HTTP_AUTHORIZATION", "")):
        return JsonResponse(
            error_body(
                "unauthorized",
                "a valid 'Authorization: Bearer <token>' header is required",
            ),
            status=401,
        )
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
