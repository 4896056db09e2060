"""The Lua scripts behind ``RedisUsageStore``: each change of a key's quota counters is one
atomic script, so replicas never interleave a check with another replica's add.

One hash per key and period holds:
- ``used``, ``requests``, ``hits``: the period's totals (seeded once from the database);
- ``r:<replica>``: tokens held by that replica's requests in flight;
- ``pu:<replica>``, ``pr:<replica>``, ``ph:<replica>``: what that replica settled and has
  not yet written to the database (used tokens, requests, cache hits).

A replica is alive while its lease key (``ARGV`` names the prefix) exists. Every script
that reads a hash drops the holds of replicas whose lease has gone (a crashed replica's
requests will never settle) and takes over their unwritten usage, so that the caller
writes it to the database. Every script answers ``-1`` on a hash that was never seeded
(or that Redis lost): the caller seeds it from the database and runs the script again,
since counting from zero would forget the period's usage.

Lua numbers are doubles, which Lua prints in exponent notation from 1e14 up: counts are
compared as numbers (exact below 2^53) but always written from the strings they came as.
"""

from __future__ import annotations

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
      local kind, owner = string.match(f, '^(%a+):(.+)$')
      if owner ~= me then
        if dead[owner] == nil then
          dead[owner] = redis.call('EXISTS', lease .. owner) == 0
        end
      end
      if kind == 'r' then
        if owner == me or not dead[owner] then c.reserved = c.reserved + v
        else redis.call('HDEL', h, f) end
      elseif owner ~= me and dead[owner] then
        redis.call('HINCRBY', h, kind .. ':' .. me, raw)
        redis.call('HDEL', h, f)
        c.claimed = 1
      end
    end
  end
  return c
end
"""

RESERVE = (
    _SWEEP
    + """
-- KEYS[1]: the hash. ARGV: me, lease prefix, tokens, quota (-1: none).
if redis.call('HEXISTS', KEYS[1], 'used') == 0 then return {-1} end
local c = sweep(KEYS[1], ARGV[1], ARGV[2])
local tokens, quota = tonumber(ARGV[3]), tonumber(ARGV[4])
local admitted = 1
if quota >= 0 and c.used + c.reserved + tokens > quota then
  admitted = 0
elseif tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 'r:' .. ARGV[1], ARGV[3])
  c.reserved = c.reserved + tokens
end
return {admitted, c.used, c.reserved, c.requests, c.hits, c.claimed}
"""
)
"""Admit ``tokens`` iff used + live holds + tokens fits the quota (the domain's ``fits``);
with 0 tokens and no quota, a read."""

SETTLE = """
-- KEYS[1]: the hash. ARGV: me, tokens to release, used, requests, hits,
-- 1 to queue the usage for this replica's next database write (0: already queued).
if redis.call('HEXISTS', KEYS[1], 'used') == 0 then return -1 end
local me = ARGV[1]
if tonumber(ARGV[2]) > 0 then
  local held = 'r:' .. me
  if redis.call('HINCRBY', KEYS[1], held, '-' .. ARGV[2]) <= 0 then
    redis.call('HDEL', KEYS[1], held)
  end
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'used', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'requests', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'hits', ARGV[5])
  if ARGV[6] == '1' then
    redis.call('HINCRBY', KEYS[1], 'pu:' .. me, ARGV[3])
    redis.call('HINCRBY', KEYS[1], 'pr:' .. me, ARGV[4])
    redis.call('HINCRBY', KEYS[1], 'ph:' .. me, ARGV[5])
  end
end
return 1
"""
"""Release a hold and add the settled usage (settle; release is usage 0)."""

TAKE_PENDING = """
-- KEYS[1]: the hash. ARGV: me. What this replica settled and has not written yet,
-- handed over to be written (the fields go: the caller now owns the amounts).
local f = {'pu:' .. ARGV[1], 'pr:' .. ARGV[1], 'ph:' .. ARGV[1]}
local v = redis.call('HMGET', KEYS[1], f[1], f[2], f[3])
redis.call('HDEL', KEYS[1], f[1], f[2], f[3])
return {tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')}
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
