from django.urls import path

from volumes import views

urlpatterns = [
    path("volumes", views.VolumeListView.as_view(), name="volume-list"),
    path("volumes/<str:name>", views.VolumeDetailView.as_view(), name="volume-detail"),
]
