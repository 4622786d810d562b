from django.apps import AppConfig


class CorestoreConfig(AppConfig):
    name = "corestore_project"
    verbose_name = "corestore"
