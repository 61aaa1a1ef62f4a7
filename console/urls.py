from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import reconciliation, runs, stock, trace, views
from console.health import healthz, metrics
from syncs import views as sync_views

admin.site.site_header = "Switchyard administration"
admin.site.site_title = "Switchyard"
admin.site.index_title = "Mappings and settings"


def section(prefix: str, namespace: str, *patterns):
    """The console's pages under ``prefix``, named ``namespace:name``."""
    return path(prefix, include((list(patterns), namespace)))


urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("mappings/", views.mappings_overview, name="mappings"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("exceptions/", include("exceptions.urls")),
    section(
        "reconciliation/",
        "reconciliation",
        path("", reconciliation.overview, name="overview"),
        path("run/", reconciliation.run, name="run"),
        path("orders.csv", reconciliation.orders_csv, name="orders_csv"),
        path("orders/<int:pk>/", reconciliation.order_day, name="day"),
        path("orders/<int:pk>/sign-off/", reconciliation.order_day_sign_off, name="sign_off"),
        path("orders/<int:pk>/reopen/", reconciliation.order_day_reopen, name="reopen"),
    ),
    section(
        "stock/",
        "stock",
        path("", stock.pairs, name="pairs"),
        # SKUs may hold a slash: the buffer route goes first, so a SKU's page never swallows it.
        path("<path:sku>/buffers/<slug:channel_code>/", stock.buffer_edit, name="buffer"),
        path("<path:sku>/", stock.sku_detail, name="sku"),
    ),
    section(
        "orders/",
        "orders",
        path("", trace.search, name="search"),
        path("<int:pk>/", trace.trace, name="trace"),
    ),
    section(
        "runs/",
        "runs",
        path("", runs.run_list, name="list"),
        path("live/", runs.live, name="live"),
        path("start/", runs.start, name="start"),
        path("<int:pk>/", runs.detail, name="detail"),
    ),
    path("api/exceptions/", include("exceptions.api_urls")),
    path("api/", include("console.api_urls")),
    path("webhooks/<slug:system>/", sync_views.webhook, name="webhook"),
    path("feeds/inventory-planner/", include("syncs.feed_urls")),
    path("admin/", admin.site.urls),
    # Outside the sign-in: Prometheus scrapes /metrics with a token; load balancers call /healthz.
    path("metrics", metrics, name="metrics"),
    path("healthz", healthz, name="healthz"),
]
