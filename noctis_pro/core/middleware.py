"""Map domain exceptions to HTTP in one place: JSON for API paths, a plain page otherwise."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from noctis_pro.core.exceptions import NoctisError


class DomainErrorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, NoctisError):
            return None
        if request.path.startswith("/api/") or request.headers.get("Accept", "").startswith("application/json"):
            return JsonResponse({"error": exception.message}, status=exception.status)
        return HttpResponse(exception.message, status=exception.status, content_type="text/plain; charset=utf-8")
