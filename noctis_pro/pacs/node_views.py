"""Pages for remote DICOM nodes (admin role only, others 403): nodes with a C-ECHO button, routing rules,
transfers with their progress, "send to node" for a study, and a remote query with retrieve. Thin: the rules
live in pacs.nodes, the work in pacs.transfers (Celery)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from noctis_pro.contracts.uids import uid_is_valid
from noctis_pro.core.audit import audit_record
from noctis_pro.core.exceptions import NoctisError
from noctis_pro.pacs import nodes
from noctis_pro.pacs.models import ForwardRule, Node, Study, Transfer
from noctis_pro.pacs.node_forms import NodeForm, QueryForm, RetrieveForm, RuleForm, SendForm

TRANSFERS_SHOWN = 200


def node_admin_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous -> the login page; logged in without the admin role -> 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not nodes.user_may_manage_nodes(request.user):
            raise PermissionDenied("nodes are for the admin role")
        return view(request, *args, **kwargs)

    return login_required(wrapped)


@node_admin_required
@require_http_methods(["GET", "POST"])
def node_list(request: HttpRequest) -> HttpResponse:
    form = NodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            node = nodes.node_create(fields=form.fields_value(), user=request.user)
        except NoctisError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Node {node.name} added.")
            return redirect("nodes:list")
    context = {
        "nodes": Node.objects.order_by("name"),
        "form": form,
        "our_ae_title": settings.DICOM_AE_TITLE,
        "our_dicom_port": settings.DICOM_PORT,
    }
    return render(request, "nodes/nodes.html", context, status=400 if form.errors else 200)


@node_admin_required
@require_http_methods(["GET", "POST"])
def node_edit(request: HttpRequest, node_id: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=node_id)
    form = NodeForm(request.POST) if request.method == "POST" else NodeForm.for_node(node)
    if request.method == "POST" and form.is_valid():
        try:
            nodes.node_update(node=node, fields=form.fields_value(), user=request.user)
        except NoctisError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Node {node.name} saved.")
            return redirect("nodes:list")
    return render(request, "nodes/node_edit.html", {"node": node, "form": form}, status=400 if form.errors else 200)


@node_admin_required
@require_POST
def node_delete(request: HttpRequest, node_id: int) -> HttpResponse:
    node = get_object_or_404(Node, pk=node_id)
    nodes.node_delete(node=node, user=request.user)
    messages.success(request, f"Node {node.name} removed.")
    return redirect("nodes:list")


@node_admin_required
@require_POST
def node_echo(request: HttpRequest, node_id: int) -> HttpResponse:
    """JSON for the page's script; without it, the result as a message on the nodes page."""
    node = get_object_or_404(Node, pk=node_id)
    result = nodes.node_echo(node=node)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(result.as_dict())
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("nodes:list")


@node_admin_required
@require_http_methods(["GET", "POST"])
def rule_list(request: HttpRequest) -> HttpResponse:
    form = RuleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            nodes.rule_create(
                name=data["name"], node=data["node"], modality=data["modality"], calling_ae=data["calling_ae"],
                user=request.user,
            )  # fmt: skip
        except NoctisError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Rule {data['name']} added.")
            return redirect("nodes:rules")
    rules = ForwardRule.objects.select_related("node").order_by("name")
    return render(request, "nodes/rules.html", {"rules": rules, "form": form}, status=400 if form.errors else 200)


@node_admin_required
@require_POST
def rule_toggle(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(ForwardRule, pk=rule_id)
    rule.enabled = not rule.enabled
    rule.save(update_fields=["enabled"])
    audit_record(request_or_user=request, action="rule.update", object_type="forward_rule", object_id=str(rule.pk),
                 detail={"enabled": rule.enabled})  # fmt: skip
    return redirect("nodes:rules")


@node_admin_required
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(ForwardRule, pk=rule_id)
    audit_record(request_or_user=request, action="rule.delete", object_type="forward_rule", object_id=str(rule.pk),
                 detail={"name": rule.name})  # fmt: skip
    rule.delete()
    messages.success(request, f"Rule {rule.name} removed.")
    return redirect("nodes:rules")


@node_admin_required
def transfer_list(request: HttpRequest) -> HttpResponse:
    transfers = list(Transfer.objects.select_related("requested_by").order_by("-created_at", "-pk")[:TRANSFERS_SHOWN])
    active = any(t.is_active for t in transfers)
    return render(request, "nodes/transfers.html", {"transfers": transfers, "active": active})


@node_admin_required
@require_http_methods(["GET", "POST"])
def study_send(request: HttpRequest, study_uid: str) -> HttpResponse:
    study = Study.objects.select_related("patient").filter(study_instance_uid=study_uid).first()
    if not uid_is_valid(study_uid) or study is None:
        raise Http404("no such study")
    form = SendForm(request.POST or None, initial={"series_uid": request.GET.get("series", "")})
    if request.method == "POST" and form.is_valid():
        try:
            nodes.transfer_send_queue(
                node=form.cleaned_data["node"], study_uid=study_uid, series_uid=form.cleaned_data["series_uid"],
                user=request.user,
            )  # fmt: skip
        except NoctisError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Sending to {form.cleaned_data['node'].name}: follow it below.")
            return redirect("nodes:transfers")
    context = {"study": study, "form": form, "series": study.series.order_by("series_number")}
    return render(request, "nodes/send.html", context, status=400 if form.errors else 200)


@node_admin_required
def remote_query(request: HttpRequest) -> HttpResponse:
    form = QueryForm(request.GET if "node" in request.GET else None)
    matches: list[dict] | None = None
    error = ""
    if form.is_bound and form.is_valid():
        node = form.cleaned_data["node"]
        try:
            matches = nodes.node_find(node=node, level="STUDY", filters=form.filters())
        except NoctisError as exc:
            error = exc.message
        else:
            audit_record(request_or_user=request, action="node.query", object_type="node", object_id=str(node.pk),
                         detail={"filters": form.filters(), "matches": len(matches)})  # fmt: skip
    context = {
        "form": form,
        "matches": matches,
        "error": error,
        "node": form.cleaned_data.get("node") if form.is_bound and form.is_valid() else None,
    }
    return render(request, "nodes/query.html", context, status=400 if error or form.errors else 200)


@node_admin_required
@require_POST
def remote_retrieve(request: HttpRequest) -> HttpResponse:
    form = RetrieveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Retrieve: choose a node and a study.")
        return redirect("nodes:query")
    try:
        nodes.transfer_retrieve_queue(
            node=form.cleaned_data["node"], study_uid=form.cleaned_data["study_uid"], user=request.user
        )
    except NoctisError as exc:
        messages.error(request, exc.message)
        return redirect("nodes:query")
    messages.success(request, f"Retrieving from {form.cleaned_data['node'].name}: follow it below.")
    return redirect("nodes:transfers")
