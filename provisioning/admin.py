"""Read-only admin views of what is provisioned.

Operators look, the API changes: editing a row here would let the records and
the engines disagree. No secret is shown since none is stored.
"""

from django.contrib import admin

from corestore_project.admin_actions import snapshot_services_now

from .models import Resource, Service


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ResourceInline(admin.TabularInline):
    model = Resource
    fields = ["capability", "name", "engine", "status", "last_error", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Service)
class ServiceAdmin(ReadOnlyAdmin):
    list_display = ["service_id", "service_name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["service_id", "service_name"]
    readonly_fields = ["service_id", "service_name", "status", "created_at"]
    inlines = [ResourceInline]
    actions = [snapshot_services_now]


@admin.register(Resource)
class ResourceAdmin(ReadOnlyAdmin):
    list_display = ["name", "service", "capability", "engine", "status", "updated_at"]
    list_filter = ["capability", "status", "engine"]
    search_fields = ["name", "service__service_id"]
    list_select_related = ["service"]
    readonly_fields = [
        "service",
        "capability",
        "name",
        "engine",
        "status",
        "last_error",
        "created_at",
        "updated_at",
    ]
