"""Rebuild every usage roll-up (hour, then day) from the raw usage rows."""

from django.core.management.base import BaseCommand

from accounts import services
from accounts.models import RollupPeriod


class Command(BaseCommand):
    help = "Rebuild the hourly and daily usage roll-ups from the raw usage rows (the source of truth)."

    def handle(self, **options):
        hours = services.rebuild_rollups(RollupPeriod.HOUR)
        days = services.rebuild_rollups(RollupPeriod.DAY)
        self.stdout.write(f"rebuilt {hours} hour and {days} day buckets")
