"""The exception queue's API."""

app_name = "exceptions_api"
urlpatterns: list = []
