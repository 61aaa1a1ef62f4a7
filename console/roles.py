"""Staff roles. Each role is a Django group created by a migration (console/migrations/0002_roles.py).

Everyone signed in may read; what a role may change is carried by the group's model permissions, so the admin,
the pages and the API all ask the same question: ``user.has_perm(...)``.
"""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

ECOMMERCE = "ecommerce"
FINANCE = "finance"
OPERATIONS = "operations"
CUSTOMER_SERVICE = "customer_service"
INTEGRATION_ADMIN = "integration_admin"

ROLE_LABELS = {
    ECOMMERCE: "Ecommerce",
    FINANCE: "Finance",
    OPERATIONS: "Operations",
    CUSTOMER_SERVICE: "Customer service",
    INTEGRATION_ADMIN: "Integration admin",
}
ROLES = tuple(ROLE_LABELS)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The role names of a user's groups (superusers hold every role)."""
    if not user.is_authenticated:
        return frozenset()
    if user.is_superuser:
        return frozenset(ROLES)
    if not hasattr(user, "_switchyard_roles"):
        names = user.groups.filter(name__in=ROLES).values_list("name", flat=True)
        user._switchyard_roles = frozenset(names)
    return user._switchyard_roles
