"""Where the limits' counters live: Redis (shared by every hub process; each check one Lua script, so it is
atomic across replicas) or, for the embedded default without Redis, this process's memory (one process).

A request's checks are evaluated together: if any fails, none is charged (a ``peek`` tells the outcome and charges
none). Three kinds of counter:

- ``RATE``: a token bucket holding up to ``limit`` units, refilled at ``limit`` per minute (requests or
  tokens per minute). A request takes ``cost``; settling gives back (or takes more of) the difference.
- ``BUDGET``: units used in the budget period (a UTC day or month), never above ``limit``; expires
  after the period (``extra``: its end, epoch seconds).
- ``STREAMS``: a set of the request ids streaming now, each leased until ``extra`` seconds from now (so a
  crashed hub's streams free themselves); ``limit`` at once.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

RATE, BUDGET, STREAMS = 1, 2, 3


@dataclass(frozen=True)
class Check:
    kind: int
    key: str
    limit: int
    cost: int
    extra: float = 0.0  # BUDGET: the period's end (epoch s); STREAMS: the lease (s)


@dataclass(frozen=True)
class Outcome:
    failed: int | None  # index of the first check that failed, or None
    retry_after: float  # seconds, for the failed check
    remaining: list[float]  # per check, after this request (or now, when one failed: nothing was charged)


# ARGV: now, member, peek (1: charge nothing), then per check: kind, limit, cost, extra. Returns {failed(0 = none),
# retry_after, remaining...} as strings (Lua numbers would be truncated to integers): what each check has left after
# this request, or, when one refuses it (nothing is charged), what each has left now.
ACQUIRE_LUA = """
local now, member, peek, n = tonumber(ARGV[1]), ARGV[2], ARGV[3] == '1', #KEYS
local state, remaining, left, failed, wait = {}, {}, {}, 0, 0
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind, limit, cost, extra = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3]), tonumber(ARGV[b+4])
  local delay
  if kind == 1 then
    local st = redis.call('HMGET', KEYS[i], 'level', 'ts')
    local level = tonumber(st[1]) or limit
    local ts = tonumber(st[2]) or now
    level = math.min(limit, level + math.max(0, now - ts) * limit / 60.0)
    state[i], left[i] = level, level
    delay = (cost > limit) and -1 or (cost - level) * 60.0 / limit
  elseif kind == 2 then
    left[i] = limit - tonumber(redis.call('GET', KEYS[i]) or '0')
    delay = math.max(0, extra - now)
  else  -- a stream's cost is its one slot
    left[i] = limit - redis.call('ZCOUNT', KEYS[i], '(' .. now, '+inf')
    delay = 1
  end
  remaining[i] = left[i] - cost
  if cost > left[i] and failed == 0 then failed, wait = i, delay end
end
if failed > 0 then
  local out = {tostring(failed), tostring(wait)}
  for i = 1, n do out[#out + 1] = tostring(left[i]) end
  return out
end
local out = {'0', '0'}
for i = 1, n do
  local b = 3 + (i - 1) * 4
  local kind, cost, extra = tonumber(ARGV[b+1]), tonumber(ARGV[b+3]), tonumber(ARGV[b+4])
  if not peek then
    if kind == 1 then
      redis.call('HSET', KEYS[i], 'level', tostring(state[i] - cost), 'ts', tostring(now))
      redis.call('EXPIRE', KEYS[i], 3600)
    elseif kind == 2 then
      redis.call('INCRBY', KEYS[i], cost)
      redis.call('EXPIREAT', KEYS[i], math.ceil(extra) + 86400)
    else
      redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
      redis.call('ZADD', KEYS[i], now + extra, member)
      redis.call('EXPIRE', KEYS[i], math.ceil(extra))
    end
  end
  out[#out + 1] = tostring(remaining[i])
end
return out
"""

# ARGV: now, member, then per check: kind, limit, delta. RATE: the bucket gets ``delta`` fewer units (may go
# below zero: the next requests wait); BUDGET: ``delta`` more used; STREAMS: the member leaves.
SETTLE_LUA = """
local now, member = tonumber(ARGV[1]), ARGV[2]
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 3
  local kind, limit, delta = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])
  if kind == 1 then
    local st = redis.call('HMGET', KEYS[i], 'level', 'ts')
    local level = tonumber(st[1]) or limit
    local ts = tonumber(st[2]) or now
    level = math.min(limit, level + math.max(0, now - ts) * limit / 60.0) - delta
    redis.call('HSET', KEYS[i], 'level', tostring(math.min(limit, level)), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], 3600)
  elseif kind == 2 then
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], delta) end
  else
    redis.call('ZREM', KEYS[i], member)
  end
end
return 1
"""


def _outcome(reply: list) -> Outcome:
    values = [float(v.decode() if isinstance(v, bytes) else v) for v in reply]
    failed = int(values[0])
    if failed:
        return Outcome(failed - 1, values[1], values[2:])
    return Outcome(None, 0.0, values[2:])


class RedisStore:
    """The counters in Redis; one client per event loop (``redis.asyncio`` clients are bound to one)."""

    def __init__(self, url: str, prefix: str):
        self.url, self.prefix = url, prefix
        self._clients: dict[int, tuple] = {}

    def _scripts(self):
        import asyncio

        from redis import asyncio as aioredis

        loop = asyncio.get_running_loop()
        found = self._clients.get(id(loop))
        if found is None or found[0] is not loop:
            client = aioredis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
            found = (loop, client, client.register_script(ACQUIRE_LUA), client.register_script(SETTLE_LUA))
            self._clients[id(loop)] = found
        return found[2], found[3], found[1]

    async def acquire(self, checks: list[Check], member: str, now: float, peek: bool = False) -> Outcome:
        """``peek``: the outcome alone, nothing charged."""
        acquire, _, _ = self._scripts()
        args: list = [now, member, int(peek)]
        for c in checks:
            args += [c.kind, c.limit, c.cost, c.extra]
        return _outcome(await acquire(keys=[self.prefix + c.key for c in checks], args=args))

    async def settle(self, checks: list[tuple[Check, int]], member: str, now: float) -> None:
        _, settle, _ = self._scripts()
        args: list = [now, member]
        for c, delta in checks:
            args += [c.kind, c.limit, delta]
        await settle(keys=[self.prefix + c.key for c, _ in checks], args=args)

    async def seed(self, key: str, value: int, expire_at: float) -> None:
        """Start a budget counter at what the database says was used (if no process did it first)."""
        _, _, client = self._scripts()
        await client.set(self.prefix + key, value, nx=True, exat=math.ceil(expire_at) + 86400)

    async def has(self, key: str) -> bool:
        _, _, client = self._scripts()
        return bool(await client.exists(self.prefix + key))


class LocalStore:
    """The same counters in this process, under a lock: the embedded default runs one hub process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (level, ts)
        self.used: dict[str, int] = {}
        self.streams: dict[str, dict[str, float]] = {}  # key -> member -> lease end

    def _level(self, c: Check, now: float) -> float:
        level, ts = self.buckets.get(c.key, (c.limit, now))
        return min(c.limit, level + max(0.0, now - ts) * c.limit / 60.0)

    async def acquire(self, checks: list[Check], member: str, now: float, peek: bool = False) -> Outcome:
        with self.lock:
            left: list[float] = []  # each check's level now, before this request
            refusal: tuple[int, float] | None = None
            for i, c in enumerate(checks):
                if c.kind == RATE:
                    level = self._level(c, now)
                    left.append(level)
                    wait = -1 if c.cost > c.limit else (c.cost - level) * 60.0 / c.limit
                elif c.kind == BUDGET:
                    left.append(c.limit - self.used.get(c.key, 0))
                    wait = max(0.0, c.extra - now)
                else:  # a stream's cost is its one slot
                    left.append(c.limit - sum(t > now for t in self.streams.get(c.key, {}).values()))
                    wait = 1.0
                if c.cost > left[-1] and refusal is None:
                    refusal = (i, wait)
            if refusal is not None:
                return Outcome(refusal[0], refusal[1], left)
            remaining = [level - c.cost for level, c in zip(left, checks, strict=True)]
            if peek:
                return Outcome(None, 0.0, remaining)
            for c in checks:
                if c.kind == RATE:
                    self.buckets[c.key] = (self._level(c, now) - c.cost, now)
                elif c.kind == BUDGET:
                    self.used[c.key] = self.used.get(c.key, 0) + c.cost
                else:
                    open_ = {m: t for m, t in self.streams.get(c.key, {}).items() if t > now}
                    self.streams[c.key] = {**open_, member: now + c.extra}
            return Outcome(None, 0.0, remaining)

    async def settle(self, checks: list[tuple[Check, int]], member: str, now: float) -> None:
        with self.lock:
            for c, delta in checks:
                if c.kind == RATE:
                    self.buckets[c.key] = (min(c.limit, self._level(c, now) - delta), now)
                elif c.kind == BUDGET:
                    if c.key in self.used:
                        self.used[c.key] += delta
                else:
                    self.streams.get(c.key, {}).pop(member, None)

    async def seed(self, key: str, value: int, expire_at: float) -> None:
        with self.lock:
            self.used.setdefault(key, value)

    async def has(self, key: str) -> bool:
        return key in self.used
