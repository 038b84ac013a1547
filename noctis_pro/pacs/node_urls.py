"""URLs of the node pages (pacs.node_views), under /nodes/."""

from django.urls import path

from noctis_pro.pacs import node_views as views

app_name = "nodes"

urlpatterns = [
    path("", views.node_list, name="list"),
    path("<int:node_id>/edit/", views.node_edit, name="edit"),
    path("<int:node_id>/delete/", views.node_delete, name="delete"),
    path("<int:node_id>/echo/", views.node_echo, name="echo"),
    path("rules/", views.rule_list, name="rules"),
    path("rules/<int:rule_id>/toggle/", views.rule_toggle, name="rule-toggle"),
    path("rules/<int:rule_id>/delete/", views.rule_delete, name="rule-delete"),
    path("transfers/", views.transfer_list, name="transfers"),
    path("send/<str:study_uid>/", views.study_send, name="send"),
    path("query/", views.remote_query, name="query"),
    path("retrieve/", views.remote_retrieve, name="retrieve"),
]
