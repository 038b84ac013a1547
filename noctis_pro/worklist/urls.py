from django.urls import path

from noctis_pro.worklist import views

app_name = "worklist"

urlpatterns = [
    path("", views.index, name="index"),
    path("studies/<str:study_uid>/", views.study, name="study"),
    path("studies/<str:study_uid>/analyses", views.analyse, name="analyse"),
    path("worklist/rows/<str:study_uid>/", views.row, name="row"),
    path("worklist/studies/<str:study_uid>/assign", views.assign, name="assign"),
    path("worklist/studies/<str:study_uid>/priority", views.priority, name="priority"),
    path("worklist/thumbnails/<str:series_uid>.png", views.thumbnail, name="thumbnail"),
]
