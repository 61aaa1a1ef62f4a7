"""The exception queue's pages."""

app_name = "exceptions"
urlpatterns: list = []
