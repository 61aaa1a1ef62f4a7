"""The exception queue's API, under /api/exceptions/:

- ``GET /`` the queue (filters, sort, cursor) · ``GET /<id>/`` one exception in full
- ``POST /<id>/retry/``, ``/resolve/``, ``/ignore/``, ``/assign/`` · ``POST /bulk/``
"""

from rest_framework.routers import SimpleRouter

from exceptions.api import ExceptionViewSet

app_name = "exceptions_api"

router = SimpleRouter()
router.register("", ExceptionViewSet, basename="exception")
urlpatterns = router.urls
