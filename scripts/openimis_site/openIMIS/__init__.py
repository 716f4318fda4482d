"""The lane's Django project around openIMIS's backend modules (loads the Celery app)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
