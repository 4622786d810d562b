"""Docker's legacy VolumeDriver protocol, served on the plugin's unix socket.

The daemon sends JSON without a Content-Type and with its own Accept header, so
these views read the raw body themselves and always answer JSON with an `Err`
field (empty on success).
"""

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

PLUGIN_CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"


def plugin_response(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, content_type=PLUGIN_CONTENT_TYPE)


@csrf_exempt
@require_POST
def activate(request):
    return plugin_response({"Implements": ["VolumeDriver"]})
