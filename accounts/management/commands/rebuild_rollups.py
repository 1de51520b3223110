"""Rebuild every usage roll-up (hour, then day) from the raw usage rows."""

from django.core.management.base import BaseCommand

from accounts import metering


class Command(BaseCommand):
    help = "Rebuild the hourly and daily usage roll-ups from the raw usage rows (the source of truth)."

    def handle(self, **options):
        counts = metering.refresh_rollups()
        self.stdout.write(f"rebuilt {counts['hour']} hour and {counts['day']} day buckets")
