"""Identifiers of an order that people quote and no Link column holds — a parcel's tracking number, Fulfil's shipment
number. The flows record them here as they learn them, so the order trace can show them and find the order by any
of them (syncs.models.LinkRef: lower-cased, one index look-up)."""

from collections.abc import Iterable

from syncs.links import link_note, links_note_each
from syncs.models import Link, LinkRef

# The identifiers a person may search by, and what the order trace calls them.
SEARCHABLE = {
    "tracking_number": "tracking number",
    "shipment_number": "Fulfil shipment number",
}


def link_identifiers_record(link: Link, **values: str | None) -> None:
    """Note ``values`` on the link's detail (empty ones skipped; only what changed is written) and make the
    searchable ones (``SEARCHABLE``) find the link. Idempotent: a retry records nothing twice."""
    values = {name: str(value).strip() for name, value in values.items() if value not in (None, "")}
    changed = {name: value for name, value in values.items() if link.detail.get(name) != value}
    if changed:
        link_note(link, **changed)
    refs = [
        LinkRef(link=link, ref=value.lower()[:200], what=name) for name, value in values.items() if name in SEARCHABLE
    ]
    if refs:
        LinkRef.objects.bulk_create(refs, ignore_conflicts=True)


def links_identifiers_record(items: Iterable[tuple[Link, dict[str, str | None]]]) -> None:
    """``link_identifiers_record`` for many links at once ([(link, values)]): one UPDATE for the notes that
    changed, one INSERT for the searchable identifiers."""
    notes, refs = [], []
    for link, values in items:
        values = {name: str(value).strip() for name, value in values.items() if value not in (None, "")}
        changed = {name: value for name, value in values.items() if link.detail.get(name) != value}
        if changed:
            notes.append((link, changed))
        refs += [
            LinkRef(link=link, ref=value.lower()[:200], what=name)
            for name, value in values.items()
            if name in SEARCHABLE
        ]
    links_note_each(notes)
    LinkRef.objects.bulk_create(refs, ignore_conflicts=True)
