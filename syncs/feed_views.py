"""The Inventory Planner feeds over HTTP: GET streams the CSV, HEAD answers its headers, both behind HTTP basic
auth with the credentials from settings. No password configured: the feeds do not exist (404)."""

import base64
import binascii
import hmac
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import chain

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from syncs import connections
from syncs.connectors.errors import ConnectorError
from syncs.csv_stream import csv_chunks
from syncs.feeds import PRODUCT_COLUMNS, SALES_ORDER_COLUMNS, planner_product_rows, planner_sales_order_rows

logger = logging.getLogger(__name__)

REALM = "Switchyard Inventory Planner feeds"


@login_not_required  # Inventory Planner signs in with HTTP basic auth, checked here
@require_http_methods(["GET", "HEAD"])
def planner_products_feed(request: HttpRequest) -> HttpResponse:
    """Every Centra size as a row of Inventory Planner's products file."""
    refused = _refusal(request)
    if refused:
        return refused
    if request.method == "HEAD":
        return _csv_response("products.csv", iter(()))
    rows = planner_product_rows(
        centra=connections.centra(),
        pricelist_id=settings.IP_FEED_CENTRA_PRICELIST_ID,
        warehouse_id=settings.IP_FEED_CENTRA_WAREHOUSE_ID,
        vendor=settings.IP_FEED_VENDOR,
    )
    return _streamed("products.csv", csv_chunks(PRODUCT_COLUMNS, rows))


@login_not_required  # Inventory Planner signs in with HTTP basic auth, checked here
@require_http_methods(["GET", "HEAD"])
def planner_sales_orders_feed(request: HttpRequest) -> HttpResponse:
    """Every Centra order line placed in the window (IP_FEED_SALES_DAYS, or ``?since=`` a date or an ISO 8601
    moment) as rows of Inventory Planner's sales order file."""
    refused = _refusal(request)
    if refused:
        return refused
    since = timezone.now() - timedelta(days=settings.IP_FEED_SALES_DAYS)
    if request.GET.get("since"):
        since = _moment(request.GET["since"])
        if since is None:
            return HttpResponseBadRequest(
                "since must be a date (2026-01-31) or an ISO 8601 moment.", content_type="text/plain"
            )
    if request.method == "HEAD":
        return _csv_response("sales-orders.csv", iter(()))
    rows = planner_sales_order_rows(centra=connections.centra(), since=since, warehouse=settings.IP_FEED_WAREHOUSE)
    return _streamed("sales-orders.csv", csv_chunks(SALES_ORDER_COLUMNS, rows))


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """404 when the feeds are off (no password configured), 401 unless the request carries the configured
    username and password; None when it may have the feed. Credentials are compared in constant time and never
    logged."""
    password = settings.IP_FEED_PASSWORD
    if not password:
        raise Http404("No feed here.")
    username, given_password = _basic_credentials(request.headers.get("Authorization", ""))
    # Both compared, always, so the time taken says nothing about which one was wrong.
    username_ok = hmac.compare_digest(username.encode(), settings.IP_FEED_USERNAME.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    if username_ok and password_ok:
        return None
    response = HttpResponse("Sign in with the feed's username and password.", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return response


def _basic_credentials(header: str) -> tuple[str, str]:
    """(username, password) from an ``Authorization: Basic …`` header; empty strings when it is not one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, separator, password = decoded.partition(":")
    return (username, password) if separator else ("", "")


def _moment(value: str) -> datetime | None:
    """A date (midnight UTC) or an ISO 8601 moment (UTC unless it says otherwise); None when it is neither."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _streamed(filename: str, chunks: Iterator[str]) -> HttpResponse:
    """The feed's response, its first chunk read before it starts: Centra refusing or failing at the first page is
    a 503 Inventory Planner retries, not a 200 with an empty file that would delete every product there. A failure
    later is raised inside the stream, which breaks the response off unfinished rather than end it as a file."""
    try:
        first = next(chunks)
    except ConnectorError as error:
        logger.warning("Inventory Planner feed %s not served: %s", filename, error)
        response = HttpResponse("Centra could not be read; try again later.", status=503, content_type="text/plain")
        response["Retry-After"] = "300"
        return response
    return _csv_response(filename, chain([first], chunks))


def _csv_response(filename: str, chunks: Iterator[str]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
