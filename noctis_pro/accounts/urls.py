from django.urls import path

from noctis_pro.accounts import audit_views

app_name = "audit"

urlpatterns = [
    path("audit/", audit_views.search, name="search"),
]
