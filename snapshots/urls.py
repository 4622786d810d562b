from django.urls import path

from snapshots import views

urlpatterns = [
    path(
        "volumes/snapshot",
        views.VolumeSnapshotView.as_view(),
        name="volume-snapshot",
    ),
    path("volumes/restore", views.VolumeRestoreView.as_view(), name="volume-restore"),
    path(
        "resources/snapshot",
        views.ResourceSnapshotView.as_view(),
        name="resource-snapshot",
    ),
    path(
        "resources/restore",
        views.ResourceRestoreView.as_view(),
        name="resource-restore",
    ),
    path("snapshots", views.SnapshotListView.as_view(), name="snapshot-list"),
    path("jobs", views.JobListView.as_view(), name="job-list"),
    path("jobs/<uuid:job_id>", views.JobDetailView.as_view(), name="job-detail"),
]
