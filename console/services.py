from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from console.models import WorkerHeartbeat
from syncs.flows.reconcile_orders import sign_off_clear
from syncs.models import OrderReconciliation

SIGN_OFF = "syncs.sign_off_orderreconciliation"


def heartbeat_record(*, name: str, cluster: str = "") -> WorkerHeartbeat:
    """Stamp the named heartbeat with the current time, creating it the first time."""
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        name=name, defaults={"beat_at": timezone.now(), "cluster": cluster}
    )
    return heartbeat


def order_reconciliation_sign_off(*, reconciliation: OrderReconciliation, actor, note: str) -> None:
    """Sign a day off. Raises PermissionDenied, ValidationError (a day with differences needs a note saying how
    they were dealt with; a day already signed off is not signed again)."""
    if not actor.has_perm(SIGN_OFF):
        raise PermissionDenied("Only finance can sign off a reconciled day.")
    note = note.strip()
    with transaction.atomic():
        locked = OrderReconciliation.objects.select_for_update().get(pk=reconciliation.pk)
        if locked.signed_off_at:
            raise ValidationError(f"This day was signed off by {locked.signed_off_by} already.")
        if locked.differences and not note:
            raise ValidationError("This day has differences: say in the note how they were dealt with.")
        locked.signed_off_by, locked.signed_off_at, locked.sign_off_note = actor, timezone.now(), note
        locked.save(update_fields=["signed_off_by", "signed_off_at", "sign_off_note"])


def order_reconciliation_reopen(*, reconciliation: OrderReconciliation, actor) -> None:
    if not actor.has_perm(SIGN_OFF):
        raise PermissionDenied("Only finance can reopen a signed-off day.")
    with transaction.atomic():
        locked = OrderReconciliation.objects.select_for_update().get(pk=reconciliation.pk)
        if locked.signed_off_at:
            sign_off_clear(locked, reason=f"reopened by {actor.get_username()}")
            locked.save(update_fields=["signed_off_by", "signed_off_at", "sign_off_note", "sign_off_history"])
