from django.apps import AppConfig


class CorestoreConfig(AppConfig):
    name = "corestore_project"
    verbose_name = "corestore"

    def ready(self):
        # Registers the OpenAPI descriptions of the other apps' endpoints.
        from corestore_project import api_schema  # noqa: F401
