from django.urls import path

from noctis_pro.exports import views

app_name = "exports"

urlpatterns = [
    path("exports/", views.index, name="index"),
    path("exports/new/", views.create, name="create"),
    path("exports/<uuid:export_id>/download/", views.download, name="download"),
]
