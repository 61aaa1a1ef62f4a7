"""The exception queue's API: list with the page's filters, detail, and the actions — retry, resolve, ignore,
assign, and each in bulk. Token (``Authorization: Token <key>``) or session auth; everyone signed in reads, and
acting follows ``exceptions.services.can_act``, which the services enforce.

The views only translate: reads go through exceptions.selectors, every change through exceptions.services."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from exceptions.kinds import KINDS, TEAMS
from exceptions.models import ACTIVE, SyncException
from exceptions.selectors import (
    AGE_BUCKETS,
    PAGE_SIZE,
    SORTS,
    QueueFilters,
    count_capped,
    exception_detail,
    exception_queue,
    queue_page,
)
from exceptions.serializers import (
    STATUS_FILTERS,
    AssignSerializer,
    BulkActionSerializer,
    BulkResultSerializer,
    ErrorSerializer,
    ExceptionDetailSerializer,
    ExceptionPageSerializer,
    NoteSerializer,
)
from exceptions.services import (
    exception_assign,
    exception_ignore,
    exception_resolve,
    exception_retry,
    exceptions_bulk_close,
    exceptions_bulk_retry,
)

MAX_PAGE_SIZE = 200

LIST_PARAMETERS = [
    OpenApiParameter("status", str, enum=STATUS_FILTERS, description="Default: active (open and retrying)."),
    OpenApiParameter("team", str, enum=list(TEAMS)),
    OpenApiParameter("kind", str, enum=list(KINDS)),
    OpenApiParameter("flow", str),
    OpenApiParameter("age", str, enum=list(AGE_BUCKETS), description="How long ago it was first seen."),
    OpenApiParameter("q", str, description="An order number, SKU, tracking number or reference (exact, any case)."),
    OpenApiParameter("assignee", int, description="A user id."),
    OpenApiParameter("sort", str, enum=list(SORTS), description="impact (the default), age or newest."),
    OpenApiParameter("cursor", str, description="Where the page starts: taken from the previous page's `next`."),
    OpenApiParameter("page_size", int, description=f"Default {PAGE_SIZE}, at most {MAX_PAGE_SIZE}."),
]
INVALID = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description='Refused: `{"detail": message}` when the action is not possible, or the messages per field '
    '(`{"note": [message]}`) when the body is incomplete.',
)
ERRORS = {
    400: INVALID,
    401: ErrorSerializer,
    403: ErrorSerializer,
    404: ErrorSerializer,
}


@contextmanager
def service_errors() -> Iterator[None]:
    """A service's ValidationError becomes a 400 with its message. (Its PermissionDenied needs nothing: DRF
    answers it with a 403 that keeps the message.)"""
    try:
        yield
    except DjangoValidationError as error:
        raise exceptions.ValidationError({"detail": " ".join(error.messages)}) from error


# LoginRequiredMiddleware must not send API clients to the login page: DRF's own authentication answers instead,
# with a JSON 401 or 403. (DRF 3.16+ marks its views so itself; said here so it does not rest on that.)
@method_decorator(login_not_required, name="dispatch")
class ExceptionViewSet(viewsets.GenericViewSet):
    # Token first: its WWW-Authenticate header is what makes a missing credential a 401 rather than a 403.
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [JSONParser]
    queryset = SyncException.objects.all()
    serializer_class = ExceptionDetailSerializer
    pagination_class = None
    lookup_value_regex = r"\d+"

    @extend_schema(parameters=LIST_PARAMETERS, responses={200: ExceptionPageSerializer, 401: ErrorSerializer})
    def list(self, request: Request) -> Response:
        """The queue: the exceptions matching the filters, a page at a time, in `sort` order. Follow `next` for
        the following page; it is null on the last one."""
        params = request.query_params
        queryset = exception_queue(QueueFilters.from_params(params))
        page = queue_page(
            queryset, sort=params.get("sort") or "impact", cursor=params.get("cursor"), size=_page_size(params)
        )
        count, capped = count_capped(queryset)
        next_url = (
            replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor) if page.next_cursor else None
        )
        data = {"results": page.rows, "next": next_url, "count": count, "count_capped": capped}
        return Response(ExceptionPageSerializer(data, context=self.get_serializer_context()).data)

    @extend_schema(responses={200: ExceptionDetailSerializer, 401: ErrorSerializer, 404: ErrorSerializer})
    def retrieve(self, request: Request, pk: str) -> Response:
        """One exception in full: its playbook, the request and response, and its timeline."""
        return self._detail(pk)

    @extend_schema(request=None, responses={200: ExceptionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str) -> Response:
        """Re-run the item through its flow now. Answers with the exception, now retrying."""
        exception = get_object_or_404(SyncException, pk=pk)
        with service_errors():
            exception_retry(exception=exception, actor=request.user)
        return self._detail(pk)

    @extend_schema(request=NoteSerializer, responses={200: ExceptionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        """Close it as fixed; the note says how."""
        exception = get_object_or_404(SyncException, pk=pk)
        note = _valid(NoteSerializer, request)["note"]
        with service_errors():
            exception_resolve(exception=exception, actor=request.user, note=note)
        return self._detail(pk)

    @extend_schema(request=NoteSerializer, responses={200: ExceptionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def ignore(self, request: Request, pk: str) -> Response:
        """Close it as not worth fixing; the note says why."""
        exception = get_object_or_404(SyncException, pk=pk)
        note = _valid(NoteSerializer, request)["note"]
        with service_errors():
            exception_ignore(exception=exception, actor=request.user, note=note)
        return self._detail(pk)

    @extend_schema(request=AssignSerializer, responses={200: ExceptionDetailSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str) -> Response:
        """Hand it to another team and/or a person (`"assignee": null` takes it off whoever had it)."""
        exception = get_object_or_404(SyncException, pk=pk)
        data = _valid(AssignSerializer, request)
        with service_errors():
            exception_assign(
                exception=exception, actor=request.user, team=data.get("team"), assignee=data.get("assignee")
            )
        return self._detail(pk)

    @extend_schema(
        request=BulkActionSerializer,
        responses={200: BulkResultSerializer, 400: INVALID, 401: ErrorSerializer, 403: ErrorSerializer},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """Retry, resolve or ignore many at once: those named by `ids`, or every one matching `filters` (the
        list's filters). Only open or retrying exceptions are acted on, and only those your team owns (all of them
        for an integration admin). Retries are queued, so ten thousand take one quick request."""
        data = _valid(BulkActionSerializer, request)
        if "ids" in data:
            selection = SyncException.objects.filter(pk__in=data["ids"])
        else:
            selection = exception_queue(QueueFilters.from_params({k: str(v) for k, v in data["filters"].items()}))
        matched = selection.filter(status__in=ACTIVE).count()
        with service_errors():
            if data["action"] == "retry":
                acted_on = exceptions_bulk_retry(queryset=selection, actor=request.user)
            else:
                acted_on = exceptions_bulk_close(
                    queryset=selection, actor=request.user, note=data["note"], ignore=data["action"] == "ignore"
                )
        return Response(BulkResultSerializer({"action": data["action"], "matched": matched, "acted_on": acted_on}).data)

    def _detail(self, pk: str) -> Response:
        try:
            exception = exception_detail(int(pk))
        except SyncException.DoesNotExist:
            raise Http404("No such exception.") from None
        return Response(ExceptionDetailSerializer(exception, context=self.get_serializer_context()).data)


def _valid(serializer_class: type, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _page_size(params) -> int:
    size = params.get("page_size") or ""
    return min(int(size), MAX_PAGE_SIZE) if size.isdigit() and int(size) > 0 else PAGE_SIZE
