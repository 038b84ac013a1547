"""URL routes. Everything but /health/ and the signed webhook needs a login."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from noctis_pro.core.health import health
from noctis_pro.pacs.webhook import received

urlpatterns = [
    path("health/", health, name="health"),
    path("api/dicom/received/", received, name="dicom-received"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("nodes/", include("noctis_pro.pacs.node_urls")),
    path("", include("noctis_pro.accounts.urls")),
    path("", include("noctis_pro.reports.urls")),
    path("", include("noctis_pro.worklist.urls")),
    path("", include("noctis_pro.exports.urls")),
    path("", include("noctis_pro.viewer.urls")),
]
