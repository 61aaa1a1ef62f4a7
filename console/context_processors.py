from django.http import HttpRequest
from django.urls import reverse

from console.roles import ROLE_LABELS, user_roles

# The console's sections in menu order. A section whose page is not built yet has no URL name: it is shown
# greyed out with what brings it, so the menu is the same everywhere and never links to an empty page.
SECTIONS = [
    ("Dashboard", "dashboard", ""),
    ("Exceptions", "exceptions:queue", ""),
    ("Orders", "orders:search", ""),
    ("Stock", "stock:pairs", ""),
    ("Reconciliation", "reconciliation:overview", ""),
    ("Runs", "runs:list", ""),
    ("Mappings", "mappings", ""),
]


def navigation(request: HttpRequest) -> dict:
    if not request.user.is_authenticated:
        return {}
    current = request.resolver_match.view_name if request.resolver_match else None
    sections = [
        {
            "label": label,
            "url": reverse(url_name) if url_name else None,
            "active": _is_current(url_name, current),
            "pending": pending,
        }
        for label, url_name, pending in SECTIONS
    ]
    roles = [ROLE_LABELS[role] for role in sorted(user_roles(request.user))]
    return {"nav_sections": sections, "nav_roles": roles}


def _is_current(url_name: str | None, current: str | None) -> bool:
    """A section is current on its own page and, for a namespaced section, on every page of its namespace."""
    if not url_name or not current:
        return False
    if ":" in url_name:
        return current.split(":")[0] == url_name.split(":")[0]
    return current == url_name
