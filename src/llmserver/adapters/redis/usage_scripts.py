"""The Lua scripts behind ``RedisUsageStore``: each change of a key's quota counters is one
atomic script, so replicas never interleave a check with another replica's add. Every
script but the seed takes a batch: one entry per call made in the same turn of the event
loop (see ``turn_batch``).

One hash per key and period holds:
- ``used``, ``requests``, ``hits``: the period's totals (seeded once from the database);
- ``r:<replica>``: tokens held by that replica's requests in flight;
- ``pu:<replica>:<generation>``, ``pr:...``, ``ph:...``: what that replica settled and has
  not yet written to the database (used tokens, requests, cache hits), by write generation
  (see ``RedisUsageStore.flush``);
- ``cu:<replica>``, ``cr:<replica>``, ``ch:<replica>``: what it took over from dead
  replicas and has not yet written.

A replica is alive while its lease key (``ARGV`` names the prefix) exists. Every script
that reads a hash drops the holds of replicas whose lease has gone (a crashed replica's
requests will never settle) and takes over their unwritten usage, so that the caller
writes it to the database. Every script answers ``-1`` for an entry whose hash was never
seeded (or that Redis lost): the caller seeds it from the database and runs that entry
again, since counting from zero would forget the period's usage.

Lua numbers are doubles, which Lua prints in exponent notation from 1e14 up: counts are
compared as numbers (exact below 2^53) but always written from the strings they came as.
"""

from __future__ import annotations

from llmserver.adapters.redis.pipe import Lua
from llmserver.adapters.redis.script_args import UNPACK_LUA

NOT_SEEDED = -1

# Shared by the scripts that read the whole hash: sums the live holds and takes over the
# dead replicas' fields. ``me`` is the caller's replica id, ``lease`` the lease key prefix.
_SWEEP = """
local function sweep(h, me, lease)
  local all = redis.call('HGETALL', h)
  local c = {used = 0, requests = 0, hits = 0, reserved = 0, claimed = 0}
  local dead = {}
  for i = 1, #all, 2 do
    local f, raw = all[i], all[i + 1]
    local v = tonumber(raw)
    if f == 'used' then c.used = v
    elseif f == 'requests' then c.requests = v
    elseif f == 'hits' then c.hits = v
    else
      local kind, owner = string.match(f, '^(%a+):([^:]+)')
      if owner ~= me then
        if dead[owner] == nil then
          dead[owner] = redis.call('EXISTS', lease .. owner) == 0
        end
      end
      if kind == 'r' then
        if owner == me or not dead[owner] then c.reserved = c.reserved + v
        else redis.call('HDEL', h, f) end
      elseif owner ~= me and dead[owner] then
        -- pu/pr/ph (its own) and cu/cr/ch (what it had taken over) become this
        -- replica's cu/cr/ch: kept apart from its own, which it also queues in memory.
        redis.call('HINCRBY', h, 'c' .. string.sub(kind, 2) .. ':' .. me, raw)
        redis.call('HDEL', h, f)
        c.claimed = 1
      end
    end
  end
  return c
end
"""

RESERVE = Lua(
    _SWEEP
    + UNPACK_LUA
    + """
-- KEYS: one hash per reservation (repeats allowed). ARGV: me, lease prefix, then packed
-- (``script_args``) per reservation its tokens and quota (-1: none). Applied in order,
-- each against the totals the ones before it left: a batch admits exactly what the same
-- calls one by one would.
local me, lease, v = ARGV[1], ARGV[2], unpacked(ARGV[3])
local seen, out = {}, {}
for i = 1, #KEYS do
  local h = KEYS[i]
  local c = seen[h]
  if c == nil then
    c = redis.call('HEXISTS', h, 'used') == 1 and sweep(h, me, lease)
    seen[h] = c
  end
  if not c then
    out[i] = {-1}
  else
    local raw = v[2 * i - 1]
    local tokens, quota = tonumber(raw), tonumber(v[2 * i])
    local admitted = 1
    if quota >= 0 and c.used + c.reserved + tokens > quota then
      admitted = 0
    elseif tokens > 0 then
      redis.call('HINCRBY', h, 'r:' .. me, raw)
      c.reserved = c.reserved + tokens
    end
    out[i] = {admitted, c.used, c.reserved, c.requests, c.hits, c.claimed}
  end
end
return out
"""
)
"""Admit each reservation iff used + live holds + its tokens fits its quota (the domain's
``fits``); with 0 tokens and no quota, a read."""

SETTLE = Lua(
    UNPACK_LUA
    + """
-- KEYS: one hash per change. ARGV: me, the write generation, then packed per change:
-- tokens to release, used tokens, requests, cache hits, 1 to queue the usage for this
-- replica's database write of that generation. Answers 1 per change applied, -1 per hash
-- not seeded.
local me, v = ARGV[1], unpacked(ARGV[3])
local queue = me .. ':' .. ARGV[2]
local out = {}
for i = 1, #KEYS do
  local h, a = KEYS[i], 5 * (i - 1)
  if redis.call('HEXISTS', h, 'used') == 0 then
    out[i] = -1
  else
    if tonumber(v[a + 1]) > 0 then
      local held = 'r:' .. me
      if redis.call('HINCRBY', h, held, '-' .. v[a + 1]) <= 0 then
        redis.call('HDEL', h, held)
      end
    end
    if tonumber(v[a + 3]) > 0 then
      redis.call('HINCRBY', h, 'used', v[a + 2])
      redis.call('HINCRBY', h, 'requests', v[a + 3])
      redis.call('HINCRBY', h, 'hits', v[a + 4])
      if v[a + 5] == '1' then
        redis.call('HINCRBY', h, 'pu:' .. queue, v[a + 2])
        redis.call('HINCRBY', h, 'pr:' .. queue, v[a + 3])
        redis.call('HINCRBY', h, 'ph:' .. queue, v[a + 4])
      end
    end
    out[i] = 1
  end
end
return out
"""
)
"""Release holds and add settled usage (settle; release is usage 0)."""

TAKE_PENDING = """
-- KEYS[1]: the hash. ARGV: me, a write generation. What this replica settled in that
-- generation, then what it took over from dead replicas (used, requests, hits each),
-- handed over to be written: the fields go, the caller now owns the amounts.
local me, queue = ARGV[1], ARGV[1] .. ':' .. ARGV[2]
local f = {'pu:' .. queue, 'pr:' .. queue, 'ph:' .. queue, 'cu:' .. me, 'cr:' .. me, 'ch:' .. me}
local v = redis.call('HMGET', KEYS[1], unpack(f))
redis.call('HDEL', KEYS[1], unpack(f))
local out = {}
for i = 1, 6 do out[i] = tonumber(v[i] or '0') end
return out
"""

SEED = """
-- KEYS[1]: the hash, KEYS[2]: the index of hashes. ARGV: used, requests, hits,
-- expiry (unix seconds), the index member. The first replica to seed wins.
if redis.call('HSETNX', KEYS[1], 'used', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'requests', ARGV[2], 'hits', ARGV[3])
  redis.call('EXPIREAT', KEYS[1], ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
end
return 1
"""
