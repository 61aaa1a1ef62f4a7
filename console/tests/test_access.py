"""Every URL refuses anonymous users; signed-in staff see the pages their role allows."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern

pytestmark = pytest.mark.django_db

# URLs that must answer without a login, and why.
PUBLIC = {
    "/login/",  # where people sign in
    "/admin/login/",  # the admin's own sign-in page
}
# Answer without a login, 200 when healthy and 503 when not (this test records no worker heartbeat).
HEALTH_CHECKS = {"/healthz"}  # load balancers; says which checks pass and nothing more (console/tests/test_metrics.py)


def sample_path(pattern) -> str:
    """A concrete path for one URL pattern, with sample values in place of its parameters."""
    text = str(pattern)
    if isinstance(pattern, RegexPattern):
        text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
        text = re.sub(r"\(\?P<app_label>[^)]*\)", "mappings", text)
        return re.sub(r"\((?:\?P<\w+>)?[^)]*\)", "1", text)
    return re.sub(r"<(?:\w+:)?\w+>", "1", text)


def every_url(resolver=None, prefix="") -> list[str]:
    """Every route in the URL map, with sample values in place of its parameters."""
    urls = []
    for entry in (resolver or get_resolver()).url_patterns:
        path = prefix + sample_path(entry.pattern)
        if isinstance(entry, URLResolver):
            urls.extend(every_url(entry, path))
        elif isinstance(entry, URLPattern):
            urls.append("/" + path)
    return sorted(set(urls))


def test_the_url_walk_finds_the_console_and_the_admin():
    urls = every_url()
    assert {"/", "/mappings/", "/admin/mappings/carriermapping/", "/admin/mappings/carriermapping/1/change/"} <= set(
        urls
    )


@pytest.mark.parametrize("url", every_url())
def test_every_url_refuses_anonymous_users(client, url):
    if url in PUBLIC:
        assert client.get(url).status_code == 200
        return
    if url in HEALTH_CHECKS:
        assert client.get(url).status_code in (200, 503)
        assert client.post(url).status_code == 405
        return
    for method in (client.get, client.post):
        response = method(url)
        assert response.status_code in (301, 302, 401, 403, 404, 405), (url, response.status_code)
        if response.status_code in (301, 302):
            assert "login" in response["Location"], (url, response["Location"])


@pytest.mark.parametrize("person", ["ada", "erin", "fred", "cora", "olga"])
def test_every_role_sees_the_dashboard_and_the_mappings(person, request, client_for):
    client = client_for(request.getfixturevalue(person))
    assert client.get(reverse("dashboard")).status_code == 200
    assert client.get(reverse("mappings")).status_code == 200


def test_the_mappings_page_offers_changes_only_to_those_who_may_make_them(ada, fred, client_for):
    import_url = reverse("admin:mappings_carriermapping_import")
    assert import_url in client_for(ada).get(reverse("mappings")).content.decode()
    page = client_for(fred).get(reverse("mappings")).content.decode()
    assert import_url not in page
    assert reverse("admin:mappings_carriermapping_export") in page


def test_signing_in_leads_to_the_dashboard(ada, client):
    from conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "ada", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200


def test_a_wrong_password_is_refused_with_a_message(ada, client):
    response = client.post(reverse("login"), {"username": "ada", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_signing_out_takes_a_post(ada, client_for):
    client = client_for(ada)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_the_dashboard_shows_each_connection_but_never_a_credential(ada, client_for, settings):
    settings.CONNECTIONS = {
        **settings.CONNECTIONS,
        "fulfil": {
            **settings.CONNECTIONS["fulfil"],
            "base_url": "https://brand.fulfil.io/api/v2",
            "api_key": "live-key-9f8e7d6c5b4a",
        },
    }
    page = client_for(ada).get(reverse("dashboard")).content.decode()
    assert "brand.fulfil.io" in page and "live" in page
    assert "live-key-9f8e7d6c5b4a" not in page
    assert settings.CONNECTIONS["centra"]["token"] not in page
