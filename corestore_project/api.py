"""What every control API endpoint shares: the bearer token and JSON errors."""

import functools
import hmac
import logging

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with a stable code, answered as {"error": {"code", "message"}}."""

    def __init__(self, code: str, message: str, status_code: int = 400, field=None):
        self.status_code = status_code
        self.error_code = code
        self.field = field
        super().__init__(detail=message, code=code)


class NotFound(ApiError):
    def __init__(self, message: str):
        super().__init__("not_found", message, status.HTTP_404_NOT_FOUND)


class Conflict(ApiError):
    def __init__(self, message: str):
        super().__init__("conflict", message, status.HTTP_409_CONFLICT)


class Unavailable(ApiError):
    def __init__(self, message: str):
        super().__init__(
            "engine_unavailable", message, status.HTTP_503_SERVICE_UNAVAILABLE
        )


class JsonBodyParser(JSONParser):
    """DRF's JSON parser, with too deep nesting answered as invalid JSON.

    The json module recurses once per nesting level: `[` a hundred thousand
    times raises RecursionError, which is no ValueError and would be a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError(
                "JSON parse error - nested too deeply"
            ) from None


class AnyTypeJsonParser(JsonBodyParser):
    """Parses the body as JSON whatever Content-Type the caller sent.

    Listed after JsonBodyParser: callers that send no or another Content-Type
    get their JSON read, and a body that is not JSON gets a 400 invalid_json
    rather than DRF's 415.
    """

    media_type = "*/*"


def get_only(view):
    """GET only, answered 405 in the API's JSON shape; no CSRF check.

    For the plain Django views (/health, /metrics): without csrf_exempt a POST
    would get Django's HTML CSRF page before any method check.
    """

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "GET":
            response = JsonResponse(
                error_body(
                    "method_not_allowed", f"method {request.method} is not allowed"
                ),
                status=405,
            )
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    return wrapper


def token_matches(header: str) -> bool:
    expected = settings.API_TOKEN
    if not expected:
        return True
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


class BearerTokenPermission(BasePermission):
    message = "a valid 'Authorization: Bearer <token>' header is required"

    def has_permission(self, request, view):
        if token_matches(request.META.get("HTTP_AUTHORIZATION", "")):
            return True
        raise exceptions.NotAuthenticated(self.message)


def error_body(code: str, message: str, field=None) -> dict:
    error = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


def _first_message(detail, path=""):
    """Flatten DRF's nested validation detail to (field path, first message)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":
                return _first_message(value, path)
            return _first_message(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], path)
    return path, str(detail)


def json_exception_handler(exc, context):
    # Imported here: rest_framework.views reads the DRF settings, which name
    # classes of this module.
    from rest_framework.views import exception_handler

    if isinstance(exc, RecursionError):
        # From a JSON parser other than JsonBodyParser (a view's own list):
        # the body is nested too deeply to be read.
        exc = exceptions.ParseError("JSON parse error - nested too deeply")
    response = exception_handler(exc, context)
    if response is None:
        # Unexpected: log it with its traceback, answer without one.
        logger.exception("unhandled error in %s", context.get("view"))
        return JsonResponse(
            error_body("internal_error", "internal error; see the corestore log"),
            status=500,
        )

    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.field)
    elif isinstance(exc, exceptions.ValidationError):
        field, message = _first_message(exc.detail)
        text = f"{field}: {message}" if field else message
        body = error_body("invalid", text, field or None)
    elif isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        body = error_body("unauthorized", str(exc.detail))
        response.status_code = status.HTTP_401_UNAUTHORIZED
        # RFC 9110 requires a challenge on 401; DRF adds none without an
        # authentication class.
        response["WWW-Authenticate"] = 'Bearer realm="corestore"'
    elif isinstance(exc, exceptions.ParseError):
        body = error_body("invalid_json", str(exc.detail))
    else:
        code = getattr(exc, "default_code", "error")
        body = error_body(code, str(exc.detail))
    response.data = body
    return response
