from django.urls import path

from noctis_pro.reports import views

app_name = "reports"

urlpatterns = [
    path("studies/<str:study_uid>/report/", views.save, name="save"),
]
