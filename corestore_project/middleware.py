import logging
import uuid

from django.conf import settings
from django.http import JsonResponse

from corestore_project.api import error_body
from corestore_project.logs import current_context

logger = logging.getLogger(__name__)


class RequestContextMiddleware:
    """Tags every log line of a request with its id and refuses large bodies.

    Bodies over the limit get a JSON 413 before anything reads them; Django would
    otherwise answer an HTML 400 from deep inside request parsing.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:12]
        token = current_context.set(f"req:{request_id[:32]}")
        try:
            response = self._guarded(request)
            response["X-Request-Id"] = request_id[:32]
            return response
        finally:
            current_context.reset(token)

    def _guarded(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return JsonResponse(
                error_body(
                    "too_large",
                    f"request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                    "bytes",
                ),
                status=413,
            )
        return self.get_response(request)
