import logging
import uuid

from django.conf import settings
from django.http import JsonResponse

from corestore_project.api import error_body
from corestore_project.logs import current_context, printable

logger = logging.getLogger(__name__)

PLUGIN_URLCONF = "volumes.plugin_urls"


class RequestContextMiddleware:
    """Tags every log line of a request with its id and refuses unreadable bodies.

    Bodies over the limit get a JSON 413 before anything reads them; Django would
    otherwise answer an HTML 400 from deep inside request parsing. A chunked
    body (no Content-Length) gets a 411: Django's WSGI request reads at most
    Content-Length bytes, so the view would silently see an empty body.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # The id goes into every log line of the request: no control characters.
        request_id = printable(
            request.headers.get("X-Request-Id") or uuid.uuid4().hex[:12]
        )[:32]
        token = current_context.set(f"req:{request_id}")
        try:
            response = self._guarded(request)
            response["X-Request-Id"] = request_id
            return response
        finally:
            current_context.reset(token)

    def _guarded(self, request):
        if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            return refusal(
                "length_required",
                "send the request body with a Content-Length header, not chunked",
                411,
            )

        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return refusal(
                "too_large",
                f"request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                413,
            )
        return self.get_response(request)


def refusal(code: str, message: str, status: int) -> JsonResponse:
    """The control API's error body, or the plugin protocol's on its socket."""
    if settings.ROOT_URLCONF == PLUGIN_URLCONF:
        from volumes.plugin_views import plugin_response

        return plugin_response({"Err": message}, status=status)
    return JsonResponse(error_body(code, message), status=status)
