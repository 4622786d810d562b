from django.urls import path

from volumes import plugin_views

urlpatterns = [
    path("Plugin.Activate", plugin_views.activate, name="plugin-activate"),
]
