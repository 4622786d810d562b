"""The routes of the volume plugin's socket: nothing but Docker's protocol."""

from django.urls import path

from volumes import plugin_views

urlpatterns = [
    path("Plugin.Activate", plugin_views.activate, name="plugin-activate"),
    path("VolumeDriver.Create", plugin_views.create, name="volumedriver-create"),
    path("VolumeDriver.Remove", plugin_views.remove, name="volumedriver-remove"),
    path("VolumeDriver.Mount", plugin_views.mount, name="volumedriver-mount"),
    path("VolumeDriver.Unmount", plugin_views.unmount, name="volumedriver-unmount"),
    path("VolumeDriver.Path", plugin_views.path, name="volumedriver-path"),
    path("VolumeDriver.Get", plugin_views.get, name="volumedriver-get"),
    path("VolumeDriver.List", plugin_views.list_volumes, name="volumedriver-list"),
    path(
        "VolumeDriver.Capabilities",
        plugin_views.capabilities,
        name="volumedriver-capabilities",
    ),
]

handler400 = plugin_views.bad_request
handler404 = plugin_views.not_found
handler500 = plugin_views.server_error
