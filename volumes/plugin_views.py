"""Docker's legacy VolumeDriver protocol, served on the plugin's unix socket.

The daemon sends JSON without a Content-Type and with its own Accept header, so
these views read the raw body themselves and always answer JSON with an `Err`
field (empty on success). Refusals are answered with status 200 and the reason
in `Err`, which the daemon shows to the user as it is.

Quirks of the daemon that shape these answers:

- `docker volume create` calls Get first and Create only when Get fails.
- Any `Err` from Get, also a passing one, makes the daemon treat the volume as
  gone (after its restart it drops such volumes from its own list), so Get
  answers from the database alone and never depends on other processes.
- Activate and Capabilities are asked once and cached until the daemon
  restarts.
"""

import functools
import json
import logging
from datetime import UTC

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from volumes import driver
from volumes.models import Volume

logger = logging.getLogger(__name__)

PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


def plugin_response(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, content_type=PLUGIN_CONTENT_TYPE)


def _read_body(request) -> dict:
    raw = request.body.strip()
    if not raw or raw == b"null":
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: nested deeper than the json module can follow.
        raise driver.VolumeError("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise driver.VolumeError("request body must be a JSON object")
    return body


def endpoint(view):
    """POST only, JSON in and out, and every failure reported in `Err`."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request):
        if request.method != "POST":
            return plugin_response({"Err": "use POST"}, status=405)
        try:
            answer = view(_read_body(request))
        except driver.VolumeError as exc:
            return plugin_response({"Err": str(exc)})
        except Exception:
            logger.exception("%s failed", request.path)
            return plugin_response(
                {"Err": "internal error in the corestore volume plugin; see its log"},
                status=500,
            )
        return plugin_response({**answer, "Err": ""})

    return wrapper


@csrf_exempt
def activate(request):
    return plugin_response({"Implements": ["VolumeDriver"]})


def _created_at(volume: Volume) -> str:
    # RFC 3339, which the daemon parses into `docker volume inspect`'s CreatedAt.
    return volume.created_at.astimezone(UTC).isoformat(timespec="seconds")


@endpoint
def create(body):
    driver.create_volume(body.get("Name"), body.get("Opts"))
    return {}


@endpoint
def remove(body):
    driver.remove_volume(body.get("Name"))
    return {}


@endpoint
def mount(body):
    mountpoint = driver.mount_volume(body.get("Name"), body.get("ID"))
    return {"Mountpoint": str(mountpoint)}


@endpoint
def unmount(body):
    driver.unmount_volume(body.get("Name"), body.get("ID"))
    return {}


@endpoint
def path(body):
    volume = driver.get_volume(body.get("Name"))
    return {"Mountpoint": str(volume.mountpoint)}


@endpoint
def get(body):
    volume = driver.get_volume(body.get("Name"))
    status = {"mounts": volume.mounts.count()}
    if volume.service_id:
        status["serviceId"] = volume.service_id
    return {
        "Volume": {
            "Name": volume.name,
            "Mountpoint": str(volume.mountpoint),
            "CreatedAt": _created_at(volume),
            "Status": status,
        }
    }


@endpoint
def list_volumes(body):
    return {
        "Volumes": [
            {
                "Name": volume.name,
                "Mountpoint": str(volume.mountpoint),
                "CreatedAt": _created_at(volume),
            }
            for volume in Volume.objects.only("name", "created_at")
        ]
    }


@endpoint
def capabilities(body):
    # Volumes live on this node's disk: "local" tells swarm not to expect
    # them on other nodes.
    return {"Capabilities": {"Scope": "local"}}


def bad_request(request, exception=None):
    return plugin_response({"Err": "bad request"}, status=400)


def not_found(request, exception=None):
    return plugin_response(
        {"Err": f"the volume plugin has no endpoint {request.path}"}, status=404
    )


def server_error(request):
    return plugin_response(
        {"Err": "internal error in the corestore volume plugin; see its log"},
        status=500,
    )
