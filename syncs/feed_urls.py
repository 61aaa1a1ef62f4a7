"""The Inventory Planner feeds' permanent URLs: /feeds/inventory-planner/products.csv and sales-orders.csv."""

from django.urls import path

from syncs import feed_views

app_name = "feeds"

urlpatterns = [
    path("products.csv", feed_views.planner_products_feed, name="planner_products"),
    path("sales-orders.csv", feed_views.planner_sales_orders_feed, name="planner_sales_orders"),
]
