from django.contrib import admin
from django.urls import include, path

from corestore_project import errors
from corestore_project.health import health

urlpatterns = [
    path("health", health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("provisioning.urls")),
    path("", include("volumes.urls")),
    path("", include("snapshots.urls")),
]

handler400 = errors.bad_request
handler403 = errors.forbidden
handler404 = errors.not_found
handler500 = errors.server_error
