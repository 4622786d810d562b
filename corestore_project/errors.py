"""JSON answers for errors raised outside DRF views (unknown URLs, crashes)."""

from django.http import JsonResponse

from corestore_project.api import error_body


def bad_request(request, exception=None):
    return JsonResponse(error_body("bad_request", "bad request"), status=400)


def forbidden(request, exception=None):
    return JsonResponse(error_body("forbidden", "forbidden"), status=403)


def not_found(request, exception=None):
    return JsonResponse(
        error_body("not_found", f"no endpoint at {request.path}"), status=404
    )


def server_error(request):
    return JsonResponse(
        error_body("internal_error", "internal error; see the corestore log"),
        status=500,
    )
