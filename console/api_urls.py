"""The API's description, under /api/: the OpenAPI schema (YAML by default, ``?format=json`` for JSON) and a page
to read it in the browser. Both are generated from the API's code, so they cannot drift from it. No Swagger UI or
Redoc: those load their scripts from a CDN, and the console loads nothing from outside."""

from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import path
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer

app_name = "api"


class SchemaView(SpectacularAPIView):
    # As for the API itself: signed-in users only, by token or session; token first so a missing credential is a 401.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]


class SchemaPageView(SchemaView):
    """The OpenAPI 3 description of Switchyard's API: every path, its parameters, request bodies and responses.

    Download it for a client generator or an API tool from /api/schema/ (YAML) or /api/schema/?format=json (JSON).

    Authenticate with a token in the header `Authorization: Token <key>` (an administrator creates keys under
    Auth Token in the admin), or with the session of a signed-in browser (send the CSRF token on POST).
    """

    name = "Switchyard API"
    # DRF's browsable renderer serves its styles and scripts from our own static files: nothing from a CDN.
    renderer_classes = [BrowsableAPIRenderer, OpenApiJsonRenderer]


urlpatterns = [
    # Clients authenticate by token, so LoginRequiredMiddleware must not redirect them: DRF answers a JSON 401.
    path("schema/", login_not_required(SchemaView.as_view()), name="schema"),
    # A page for people: a visitor who is not signed in is sent to the login page, as on every other page. (DRF marks
    # its views login_not_required, so LoginRequiredMiddleware alone would not do it.)
    path("docs/", login_required(SchemaPageView.as_view()), name="docs"),
]
