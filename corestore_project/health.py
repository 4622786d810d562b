"""GET /health: the state of every process and engine of the node stack.

Checks run in parallel with short timeouts, so a hung engine makes /health
answer 503 quickly instead of hanging the caller.
"""

import http.client
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import redis
from django.conf import settings
from django.http import JsonResponse

from corestore_project.api import get_only
from corestore_project.engines import database_engine, object_engine
from corestore_project.stack import supervisor_proxy

CHECK_TIMEOUT = 3.0


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def check_processes() -> dict:
    states = supervisor_proxy().supervisor.getAllProcessInfo()
    return {
        info["name"]: info["statename"].lower()
        for info in states
        if info["name"] != "logecho"
    }


def check_redis() -> bool:
    client = redis.Redis(
        unix_socket_path=str(settings.REDIS_SOCKET), socket_timeout=CHECK_TIMEOUT
    )
    try:
        return client.ping()
    finally:
        client.close()


def check_database() -> bool:
    return database_engine().ready()


def check_objectstorage() -> bool:
    object_engine().admin_client().list_buckets()
    return True


def check_worker() -> bool:
    from corestore_project.celery import app

    return bool(app.control.ping(timeout=1.0))


def check_volume_plugin() -> bool:
    connection = UnixHTTPConnection(str(settings.VOLUME_PLUGIN_SOCKET), CHECK_TIMEOUT)
    try:
        connection.request("POST", "/Plugin.Activate", body=b"{}")
        response = connection.getresponse()
        return response.status == 200 and "VolumeDriver" in json.loads(
            response.read()
        ).get("Implements", [])
    finally:
        connection.close()


def check_archive() -> bool:
    from snapshots import archive

    return archive.health()["status"] == "up"


CHECKS = {
    "redis": check_redis,
    "database": check_database,
    "objectstorage": check_objectstorage,
    "worker": check_worker,
    "volumeplugin": check_volume_plugin,
    "archive": check_archive,
}


def _run(check) -> dict:
    try:
        ok = bool(check())
        return {"status": "up" if ok else "down"}
    except Exception as exc:  # noqa: BLE001 - any failure means down
        return {"status": "down", "reason": type(exc).__name__}


def engine_info(engine) -> dict:
    return {"engine": engine.kind, "embedded": engine.embedded, "limits": engine.limits}


@get_only
def health(request):
    with ThreadPoolExecutor(max_workers=len(CHECKS) + 1) as pool:
        futures = {name: pool.submit(_run, check) for name, check in CHECKS.items()}
        processes = pool.submit(_safe_processes)
        components = {name: future.result() for name, future in futures.items()}
        process_states = processes.result()

    down = sorted(name for name, state in components.items() if state["status"] != "up")
    down += sorted(
        name
        for name, state in process_states.items()
        if state != "running" and name not in down
    )
    body = {
        "status": "ok" if not down else "unavailable",
        "down": down,
        "components": components,
        "processes": process_states,
        "engines": {
            "database": engine_info(database_engine()),
            "objectstorage": engine_info(object_engine()),
        },
        "archive": _archive_info(),
    }
    return JsonResponse(body, status=200 if not down else 503)


def _archive_info() -> dict:
    """The snapshot archive: where, which passphrase source (never its value)."""
    from snapshots import archive

    return archive.health()


def _safe_processes() -> dict:
    try:
        return check_processes()
    except Exception:  # noqa: BLE001 - supervisord unreachable
        return {"supervisord": "unreachable"}
