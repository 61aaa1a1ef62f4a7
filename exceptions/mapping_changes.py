"""When a mapping is created or changed — in the admin, by CSV import, from an exception page or the shell — every
open exception it was blocking is retried, and each one's history names the change.

Saves are the one point every way of editing a mapping passes through, so the queue listens there; the work itself
is the service ``exceptions_free_blocked``, run after the save commits.
"""

from collections.abc import Callable

from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save

from exceptions.services import exceptions_blocked_by, exceptions_free_blocked
from mappings.models import (
    CarrierMapping,
    MarketMapping,
    ShippingMethodMapping,
    SkuMapping,
    StockStatusRule,
    TaxMapping,
)


def _same(a, b) -> bool:
    return str(a or "").strip().lower() == str(b or "").strip().lower()


def _sku(m: SkuMapping) -> tuple[str, str | None, Callable[[dict], bool]]:
    return (
        "sku",
        m.system,
        lambda key: _same(key.get("centra_sku"), m.centra_sku) or _same(key.get("code"), m.external_code),
    )


def _carrier(m: CarrierMapping):
    def matches(key: dict) -> bool:
        if "code" in key:
            return _same(key["code"], m.target_code)
        return _same(key.get("carrier"), m.centra_carrier) and (
            not m.centra_service or _same(key.get("service"), m.centra_service)
        )

    return "carrier", m.system, matches


def _shipping_method(m: ShippingMethodMapping):
    return "shipping_method", m.system, lambda key: _same(key.get("method"), m.source_method)


def _tax(m: TaxMapping):
    return (
        "tax",
        None,
        lambda key: (
            _same(key.get("tax_class"), m.centra_tax_class) and (not m.country or _same(key.get("country"), m.country))
        ),
    )


def _market(m: MarketMapping):
    return (
        "market",
        None,
        lambda key: (
            str(key.get("store_id")) == str(m.centra_store_id) and str(key.get("market_id")) == str(m.centra_market_id)
        ),
    )


def _stock_status(m: StockStatusRule):
    return "stock_status", m.system, lambda key: _same(key.get("status"), m.status)


# A narrowing the database can do before the exact match above runs in Python: a CSV import of thousands of
# mappings then reads only the exceptions each one might free, not every blocked exception each time.
PREFILTERS = {
    SkuMapping: lambda m: (
        Q(mapping_key__centra_sku__iexact=m.centra_sku) | Q(mapping_key__code__iexact=m.external_code)
    ),
    CarrierMapping: lambda m: (
        Q(mapping_key__carrier__iexact=m.centra_carrier) | Q(mapping_key__code__iexact=m.target_code)
    ),
    ShippingMethodMapping: lambda m: Q(mapping_key__method__iexact=m.source_method),
    TaxMapping: lambda m: Q(mapping_key__tax_class__iexact=m.centra_tax_class),
    MarketMapping: lambda m: Q(mapping_key__store_id=m.centra_store_id),
    StockStatusRule: lambda m: Q(mapping_key__status__iexact=m.status),
}

MATCHERS = {
    SkuMapping: _sku,
    CarrierMapping: _carrier,
    ShippingMethodMapping: _shipping_method,
    TaxMapping: _tax,
    MarketMapping: _market,
    StockStatusRule: _stock_status,
}


def _describe(mapping) -> tuple[str, dict]:
    """'the new carrier mapping "DHL Express → Virtualstock dhl-express" (by ada)', and the history record."""
    record = mapping.history.order_by("-history_date", "-history_id").first()
    verb = "new" if record is None or record.history_type == "+" else "changed"
    editor = record.history_user.get_username() if record is not None and record.history_user else None
    label = f'the {verb} {mapping._meta.verbose_name} "{mapping}"' + (f" (by {editor})" if editor else "")
    return label, {
        "mapping": mapping._meta.label_lower,
        "mapping_id": mapping.pk,
        "history_id": record.history_id if record is not None else None,
        "editor": editor,
    }


def blocked_by(mapping) -> list[int]:
    """The active exceptions ``mapping`` answers: the ones its save frees."""
    mapping_kind, system, matches = MATCHERS[type(mapping)](mapping)
    return exceptions_blocked_by(
        mapping_kind=mapping_kind, system=system, matches=matches, prefilter=PREFILTERS[type(mapping)](mapping)
    )


def mapping_saved(sender, instance, **kwargs) -> None:
    def free() -> None:
        mapping_kind, system, matches = MATCHERS[sender](instance)
        label, detail = _describe(instance)
        exceptions_free_blocked(
            mapping_kind=mapping_kind,
            system=system,
            matches=matches,
            mapping_label=label,
            detail=detail,
            prefilter=PREFILTERS[sender](instance),
        )

    transaction.on_commit(free)


def connect() -> None:
    for model in MATCHERS:
        post_save.connect(mapping_saved, sender=model, dispatch_uid=f"free-blocked-{model.__name__}")
