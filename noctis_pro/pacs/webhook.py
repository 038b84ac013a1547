"""POST /api/dicom/received/: the SCP's (and STOW-RS's) signed notice that receipts are waiting to be indexed.

Any non-2xx answer makes the sender retry, so 401/400 are only for requests that can never succeed.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from noctis_pro.contracts import signing
from noctis_pro.core.exceptions import InvalidRequestError
from noctis_pro.pacs.indexing import receipts_index

MAX_IDS_PER_CALL = 10_000


def receipt_ids_parse(body: bytes) -> list[int]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequestError(f"body is not JSON: {exc}") from exc
    ids = payload.get("receipt_ids") if isinstance(payload, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise InvalidRequestError('body must be {"receipt_ids": [positive integers]}')
    if len(ids) > MAX_IDS_PER_CALL:
        raise InvalidRequestError(f"at most {MAX_IDS_PER_CALL} receipt ids per call")
    return ids


@csrf_exempt
@require_POST
def received(request: HttpRequest) -> JsonResponse:
    problem = signing.signature_problem(
        secret=settings.WEBHOOK_SECRET,
        body=request.body,
        timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
        signature=request.headers.get(signing.SIGNATURE_HEADER),
    )
    if problem is not None or not settings.WEBHOOK_SECRET:
        return JsonResponse({"error": problem or "webhook secret not configured"}, status=401)
    result = receipts_index(receipt_ids=receipt_ids_parse(request.body))
    return JsonResponse(result.as_dict(), status=200)
