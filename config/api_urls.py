"""The member API, version 1."""

from django.urls import path

from members.api import MeView

urlpatterns = [
    path("me", MeView.as_view(), name="me"),
]
