"""Admin actions for operators: snapshot a volume or a service now, read job logs.

Snapshots are queued as jobs exactly as the API queues them, so the worker,
the job list and Flower show them like any other; the admin never waits for
one. The actions are attached to the models' admins in each app's admin.py.
"""

from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from corestore_project.api import ApiError


def _queue(modeladmin, request, queryset, start_one, what):
    for obj in queryset:
        try:
            job = start_one(obj)
        except ApiError as exc:
            modeladmin.message_user(
                request, f"{what} {obj}: not queued: {exc.detail}", messages.WARNING
            )
            continue
        link = reverse("admin:snapshots_job_change", args=[job.pk])
        modeladmin.message_user(
            request,
            format_html(
                '{} {}: snapshot queued as job <a href="{}">{}</a>',
                what,
                obj,
                link,
                str(job.pk)[:8],
            ),
            messages.SUCCESS,
        )


def _snapshot_volume(volume):
    from snapshots import views
    from snapshots.models import Job

    service_id = views.volume_ops.volume_service_id(volume.name)
    if service_id is None:
        raise ApiError("not_found", "its data folder is missing", 404)
    views.ensure_no_restore_running(
        Job.Kind.SNAPSHOT_VOLUME, volume.name, restoring=False
    )
    return views.start(
        Job.Kind.SNAPSHOT_VOLUME,
        volume.name,
        service_id,
        snapshotName=views.default_name(volume.name),
        tags={"origin": "admin"},
    )


def _snapshot_service(service):
    from snapshots import views
    from snapshots.models import Job

    resources = views.resource_ops.service_resources(service.service_id)
    if not resources:
        raise ApiError("not_found", "it has no ready database or bucket", 404)
    views.ensure_no_restore_running(
        Job.Kind.SNAPSHOT_RESOURCES, service.service_id, restoring=False
    )
    return views.start(
        Job.Kind.SNAPSHOT_RESOURCES,
        service.service_id,
        service.service_id,
        snapshotName=views.default_name("snapshot"),
        tags={"origin": "admin"},
    )


@admin.action(description="Snapshot the selected volumes now")
def snapshot_volumes_now(modeladmin, request, queryset):
    _queue(modeladmin, request, queryset, _snapshot_volume, "volume")


@admin.action(description="Snapshot the selected services now")
def snapshot_services_now(modeladmin, request, queryset):
    _queue(modeladmin, request, queryset, _snapshot_service, "service")


@admin.action(description="View the log of the selected jobs")
def view_job_logs(modeladmin, request, queryset):
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Job log",
        "opts": modeladmin.model._meta,
        "jobs": queryset.order_by("created_at"),
    }
    return TemplateResponse(request, "admin/corestore/job_log.html", context)
