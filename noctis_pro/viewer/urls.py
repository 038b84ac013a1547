from django.urls import path

from noctis_pro.viewer import views

app_name = "viewer"

urlpatterns = [
    path("studies/<str:study_uid>/view", views.study_view, name="study"),
]
