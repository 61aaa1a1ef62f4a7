"""The exception queue's pages."""

from django.urls import path

from exceptions import views

app_name = "exceptions"
urlpatterns = [
    path("", views.queue, name="queue"),
    path("bulk/", views.bulk, name="bulk"),
    path("playbooks/", views.playbooks, name="playbooks"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/retry/", views.retry, name="retry"),
    path("<int:pk>/resolve/", views.resolve, name="resolve"),
    path("<int:pk>/ignore/", views.ignore, name="ignore"),
    path("<int:pk>/assign/", views.assign, name="assign"),
    path("<int:pk>/mapping/", views.create_mapping, name="create_mapping"),
    path("<int:pk>/reassert/", views.reassert, name="reassert"),
]
