from django.urls import path, re_path

from . import views

urlpatterns = [
    path(
        "resources/provision", views.ProvisionView.as_view(), name="resources-provision"
    ),
    path(
        "resources/deprovision",
        views.DeprovisionView.as_view(),
        name="resources-deprovision",
    ),
    path("resources", views.ServiceListView.as_view(), name="resources-list"),
    # This app's routes come before the snapshots app's: the lookahead leaves
    # POST /resources/snapshot and /resources/restore to it.
    re_path(
        r"^resources/(?!(?:snapshot|restore)$)(?P<service_id>[^/]+)$",
        views.ServiceDetailView.as_view(),
        name="resources-detail",
    ),
]
