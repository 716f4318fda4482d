"""`manage.py lane_base_seed --username U` (password from OPENIMIS_API_PASSWORD)."""

import os

from django.core.management.base import BaseCommand
from django.db import transaction

from lane.base_seed import seed_base


class Command(BaseCommand):
    help = "Seed the language, locations, officer, genders and the gateway's API user."

    def add_arguments(self, parser):
        parser.add_argument("--username", required=True)

    def handle(self, *args, **options):
        with transaction.atomic():
            seed_base(options["username"], os.environ["OPENIMIS_API_PASSWORD"])
        self.stdout.write("seeded")
