"""Write the usage rows spooled while the database was down (the hub does it on its own once it is back)."""

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from accounts import spool


class Command(BaseCommand):
    help = (
        "Show how many usage rows wait in HUB_SPOOL_DIR (the database was unreachable when they were metered) and "
        "write them now; with --check, only count them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="count the waiting rows, write nothing")

    def handle(self, check: bool = False, **options):
        waiting = spool.waiting()
        self.stdout.write(f"{waiting} usage rows waiting in {spool.directory()}")
        if check or not waiting:
            return
        try:
            written = spool.replay()
        except DatabaseError as exc:
            raise CommandError(f"the database is still unreachable, the rows stay spooled: {exc}") from None
        left = spool.waiting()
        # rows already in the database (a replayer died after its commit) and torn lines are not written
        self.stdout.write(f"wrote {written} rows; {left} left")
