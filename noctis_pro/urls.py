"""URL routes. Everything but /health/ and the signed webhook needs a login."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
