from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from syncs.connectors.errors import WebhookRejected
from syncs.services import WEBHOOK_VERIFIERS, webhook_receive


@csrf_exempt  # signed by the sender instead: the signature is checked before anything is kept
@login_not_required
@require_POST
def webhook(request: HttpRequest, system: str) -> JsonResponse:
    """Receive a signed webhook. 202 when kept (or already kept); 4xx, never 5xx, for anything else."""
    if system not in WEBHOOK_VERIFIERS:
        return JsonResponse({"error": f"No webhooks are received from {system!r}."}, status=404)
    declared = request.META.get("CONTENT_LENGTH") or "0"
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses.
    if not (declared.isascii() and declared.isdigit()) or int(declared) > settings.WEBHOOK_MAX_BYTES:
        return JsonResponse({"error": "The body is too large."}, status=413)
    try:
        body = request.body
    except RequestDataTooBig:
        return JsonResponse({"error": "The body is too large."}, status=413)
    try:
        stored, created = webhook_receive(system=system, body=body, headers=request.headers)
    except WebhookRejected as rejection:
        return JsonResponse({"error": rejection.reason}, status=401)
    return JsonResponse({"received": True, "duplicate": not created, "id": stored.pk}, status=202)
