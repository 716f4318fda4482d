"""The lane's own Django app: its seed data and test glue (no models)."""

from django.apps import AppConfig


class LaneConfig(AppConfig):
    name = "lane"
