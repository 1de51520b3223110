"""The tally's ledger on disk (``server.tally_path``): so that a service killed with the hub that called it still
answers for the calls it was running once it is started again on the same file.

``make run`` runs the hub and this service as one process group: a hub killed outright (SIGKILL, the out-of-memory
killer) takes the service with it, and the in-memory ledger (``tally.py``) with the counts the hub's reaper meters
its unfinished calls from (``accounts/open_requests.py``). With a journal, every second the tallies that ran or
ended since the last write are written to an SQLite file (WAL, one small upsert per call); a service started on the
file loads those written within the ledger's hour, as ended. A call is then metered with what was counted up to
the last write before the death: at most a second of output short.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

from inference.env import ConfigError
from inference.server.tally import LEDGER_SECONDS, Ledger, Tally

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tally (
    usage_id TEXT PRIMARY KEY, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, audio_seconds REAL NOT NULL, written REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tally_written ON tally (written);
"""
Row = tuple[str, int, int, int, float, float]  # usage_id, prompt, completion, cached, audio seconds, written (epoch)


class Journal:
    def __init__(self, path: str | Path, seconds: float = LEDGER_SECONDS) -> None:
        self.path, self.seconds = Path(path), seconds
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # written from one thread at a time (``keep``'s flushes run one after another), read at start
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a process killed loses nothing; a power cut the last commit
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"server.tally_path {self.path}: cannot keep the tally journal there ({exc})") from None

    def load(self, ledger: Ledger) -> int:
        """The calls written within the ledger's time into ``ledger``, as ended when they were last written."""
        now_wall, now = time.time(), time.monotonic()
        rows = self._db.execute(
            "SELECT usage_id, prompt_tokens, completion_tokens, cached_tokens, audio_seconds, written FROM tally "
            "WHERE written > ? ORDER BY written", (now_wall - self.seconds,),
        ).fetchall()  # fmt: skip
        for usage_id, prompt, completion, cached, audio, written in rows:
            tally = Tally(usage_id, prompt, audio, {("journal", 0): (completion, cached)})
            tally.ended = now - (now_wall - written)
            ledger.restore(tally)
        return len(rows)

    def write(self, rows: list[Row]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO tally VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("DELETE FROM tally WHERE written < ?", (time.time() - self.seconds,))

    def close(self) -> None:
        self._db.close()


def rows(tallies: list[Tally]) -> list[Row]:
    now = time.time()
    out = []
    for tally in tallies:
        answer = tally.answer()
        out.append((tally.usage_id, answer["prompt_tokens"], answer["completion_tokens"], answer["cached_tokens"],
                    answer["audio_seconds"], now))  # fmt: skip
    return out


async def keep(ledger: Ledger, journal: Journal, every: float = FLUSH_SECONDS) -> None:
    """Write what changed every ``every`` seconds, until cancelled (then once more)."""
    try:
        while True:
            await asyncio.sleep(every)
            await _flush(ledger, journal)
    finally:
        await asyncio.shield(_flush(ledger, journal))


async def _flush(ledger: Ledger, journal: Journal) -> None:
    changed = rows(ledger.changed())  # read on the event loop's thread, where the tallies change
    if changed:
        try:
            await asyncio.to_thread(journal.write, changed)
        except sqlite3.Error as exc:  # a full disk must not stop the service: the memory ledger still answers
            log.warning("could not write the tally journal %s: %s", journal.path, exc)
