"""`api/graphql` (CSRF-exempt at Django's level: the modules check their own session
token), plus the test-only seeding endpoint when the settings switch mounts it."""

from django.conf import settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .views import OpenimisGraphQLView

urlpatterns = [
    path("api/graphql", csrf_exempt(OpenimisGraphQLView.as_view())),
]

if settings.LANE_TEST_GLUE:
    from lane.views import seed

    urlpatterns.append(path("_lane/seed", seed))
