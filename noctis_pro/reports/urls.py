from django.urls import path

from noctis_pro.reports import views

app_name = "reports"

urlpatterns = [
    path("studies/<str:study_uid>/report/", views.report, name="report"),
    path("studies/<str:study_uid>/report/draft", views.draft, name="draft"),
    path("studies/<str:study_uid>/report/addendum", views.addendum, name="addendum"),
    path("studies/<str:study_uid>/report.pdf", views.pdf, name="pdf"),
]
