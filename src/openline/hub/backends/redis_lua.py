"""The Lua scripts the Redis engine runs: each one step, atomic on the Redis server.

Keys of a channel ``ch`` under the prefix ``P`` (all but the presence keys expire
together, ``channel_ttl`` after the channel was last used):

``P:ch:<ch>:m``   hash: ``e`` the epoch, ``n`` the last offset
``P:ch:<ch>:s``   stream of the history: entry ``<offset>-0`` with fields ``t`` (ms),
                  ``d`` (bytes) or ``s`` (text), and ``m`` (meta as JSON) when there is meta
``P:ch:<ch>:i``   hash: client message id -> offset (the idempotency table)
``P:ch:<ch>:q``   stream: the ids in arrival order, entry ``<ms>-<seq>`` with field ``k``
``P:ch:<ch>:pc``  hash: connection -> user (who is present)
``P:ch:<ch>:pu``  hash: user -> info;  ``P:ch:<ch>:pk`` hash: user -> connections
``P:ch:<ch>:ps``  hash: user -> state; ``P:ch:<ch>:pt`` hash: user -> state deadline (ms)
``P:ch:<ch>:pv``  the number of the channel's last presence event
``P:nodes``       sorted set: node -> deadline (ms) its heartbeat renews
``P:node:<node>`` hash: ``<connection>\\n<ch>`` -> user, the node's presence entries

Live delivery: ``PUBLISH P:ch:<ch>:live`` inside the script that stored the
message, so that pub/sub order is offset order and a message is stored before
anyone hears of it. Payloads: ``d``/``s`` + ``<epoch>\\n<offset>\\n<meta>\\n<data>``
for messages, ``p`` + JSON for presence events.

Times are milliseconds: from Redis ``TIME``, or from the engine's injected clock
when it passes one (``now`` argument not empty).
"""

from __future__ import annotations

__all__ = [
    "BEAT",
    "EXPIRE_STATE",
    "HISTORY",
    "JOIN",
    "LEAVE",
    "PUBLISH",
    "REAP",
    "SNAPSHOT",
    "STATE",
]

# Shared helpers, prepended to every script.
_COMMON = r"""
local function now_ms(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The channel's epoch and last offset; a new epoch when the channel is unknown
-- or its history was lost (the stream is gone although messages were stored).
local function position(meta, stream, ids, idq, candidate)
  local epoch = redis.call('HGET', meta, 'e')
  local last = tonumber(redis.call('HGET', meta, 'n') or '0')
  if (not epoch) or (last > 0 and redis.call('EXISTS', stream) == 0) then
    epoch, last = candidate, 0
    redis.call('DEL', stream, ids, idq)
    redis.call('HSET', meta, 'e', epoch, 'n', 0)
  end
  return epoch, last
end

local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do
    if f[i] == name then return f[i + 1] end
  end
  return nil
end

-- Drop the history older than cutoff (ms, inclusive), a page at a time.
local function trim_time(stream, cutoff)
  for _ = 1, 100 do
    local page = redis.call('XRANGE', stream, '-', '+', 'COUNT', 64)
    if #page == 0 then return end
    for _, e in ipairs(page) do
      if tonumber(field(e, 't')) > cutoff then
        redis.call('XTRIM', stream, 'MINID', e[1])
        return
      end
    end
    local top = page[#page][1]
    local offset = tonumber(string.match(top, '^(%d+)'))
    redis.call('XTRIM', stream, 'MINID', (offset + 1) .. '-0')
  end
end

-- Forget idempotency keys beyond the size bound or older than cutoff (ms).
local function trim_ids(ids, idq, size, cutoff)
  if size >= 0 then
    local extra = redis.call('XLEN', idq) - size
    if extra > 0 then
      for _, e in ipairs(redis.call('XRANGE', idq, '-', '+', 'COUNT', extra)) do
        redis.call('HDEL', ids, e[2][2])
      end
      redis.call('XTRIM', idq, 'MAXLEN', size)
    end
  end
  if cutoff and cutoff >= 0 then
    local old = redis.call('XRANGE', idq, '-', tostring(cutoff), 'COUNT', 1000)
    if #old > 0 then
      for _, e in ipairs(old) do redis.call('HDEL', ids, e[2][2]) end
      local top = old[#old][1]
      local ms, seq = string.match(top, '^(%d+)-(%d+)$')
      redis.call('XTRIM', idq, 'MINID', ms .. '-' .. (tonumber(seq) + 1))
    end
  end
end

local function expire(keys, ms)
  if ms > 0 then
    for _, k in ipairs(keys) do redis.call('PEXPIRE', k, ms) end
  end
end
"""

#: KEYS meta, stream, ids, idq, live.
#: ARGV candidate epoch, now, kind (d|s), data, meta JSON or '', msg id or '',
#: history size (-1: none), history ttl ms (-1: none), id size, id ttl ms, channel ttl ms.
#: Returns {epoch, offset, duplicate (0|1)}.
PUBLISH = (
    _COMMON
    + r"""
local meta, stream, ids, idq, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms(ARGV[2])
local kind, data, m, id = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local hsize, httl = tonumber(ARGV[7]), tonumber(ARGV[8])
local isize, ittl, cttl = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local epoch, last = position(meta, stream, ids, idq, ARGV[1])
if id ~= '' then
  trim_ids(ids, idq, isize, ittl >= 0 and now - ittl or nil)
  local seen = redis.call('HGET', ids, id)
  if seen then return {epoch, tonumber(seen), 1} end
end
local offset = last + 1
local sid = offset .. '-0'
if m ~= '' then
  if hsize >= 0 then
    redis.call('XADD', stream, 'MAXLEN', '=', hsize, sid, 't', now, kind, data, 'm', m)
  else
    redis.call('XADD', stream, sid, 't', now, kind, data, 'm', m)
  end
else
  if hsize >= 0 then
    redis.call('XADD', stream, 'MAXLEN', '=', hsize, sid, 't', now, kind, data)
  else
    redis.call('XADD', stream, sid, 't', now, kind, data)
  end
end
if httl >= 0 then trim_time(stream, now - httl) end
redis.call('HSET', meta, 'n', offset)
if id ~= '' then
  redis.call('HSET', ids, id, offset)
  -- Entry ids must grow: an injected clock that stands still still works.
  local top = redis.call('XREVRANGE', idq, '+', '-', 'COUNT', 1)[1]
  local ms = now
  if top then
    local topms = tonumber(string.match(top[1], '^(%d+)'))
    if topms > ms then ms = topms end
  end
  redis.call('XADD', idq, ms .. '-*', 'k', id)
  trim_ids(ids, idq, isize, ittl >= 0 and now - ittl or nil)
end
expire({meta, stream, ids, idq}, cttl)
redis.call('PUBLISH', live, kind .. epoch .. '\n' .. offset .. '\n' .. m .. '\n' .. data)
return {epoch, offset, 0}
"""
)

#: KEYS meta, stream, ids, idq.
#: ARGV candidate epoch, now, since ('' reads the position only), epoch of since,
#: history ttl ms (-1: none), channel ttl ms.
#: Returns {epoch, last, first, recovered (0|1), entries}.
HISTORY = (
    _COMMON
    + r"""
local meta, stream, ids, idq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms(ARGV[2])
local httl, cttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch, last = position(meta, stream, ids, idq, ARGV[1])
expire({meta, stream, ids, idq}, cttl)
if httl >= 0 then trim_time(stream, now - httl) end
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local first = last + 1
if head then first = tonumber(string.match(head[1], '^(%d+)')) end
if ARGV[3] == '' then return {epoch, last, first, 0, {}} end
local since = tonumber(ARGV[3])
local entries
local recovered = 0
if ARGV[4] == epoch and first - 1 <= since and since <= last then
  recovered = 1
  entries = redis.call('XRANGE', stream, (since + 1) .. '-0', '+')
else
  entries = redis.call('XRANGE', stream, '-', '+')
end
return {epoch, last, first, recovered, entries}
"""
)

_PRESENCE = r"""
-- Presence events are numbered per channel (P:ch:<ch>:pv), next to the live key.
local function event(live, kind, user, count, extra)
  local seq = redis.call('INCR', string.sub(live, 1, #live - 4) .. 'pv')
  local e = {k = kind, u = user, c = count, q = seq}
  if extra then for k, v in pairs(extra) do e[k] = v end end
  redis.call('PUBLISH', live, 'p' .. cjson.encode(e))
end

-- Remove one connection; returns 1 when it was its user's last one.
local function leave(pc, pu, pk, ps, pt, node, live, client, ch, user)
  local stored = redis.call('HGET', pc, client)
  if (not stored) or (user and stored ~= user) then return 0 end
  redis.call('HDEL', pc, client)
  redis.call('HDEL', node, client .. '\n' .. ch)
  if redis.call('HINCRBY', pk, stored, -1) > 0 then return 0 end
  redis.call('HDEL', pk, stored)
  redis.call('HDEL', pu, stored)
  redis.call('HDEL', ps, stored)
  redis.call('HDEL', pt, stored)
  event(live, 'leave', stored, redis.call('HLEN', pu))
  return 1
end
"""

#: KEYS pc, pu, pk, node, nodes, live.
#: ARGV client, user, info, ch, node name, now, node ttl ms.
#: Returns 1 when it is the user's first connection in the channel.
JOIN = (
    _COMMON
    + _PRESENCE
    + r"""
local pc, pu, pk, node, nodes, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local client, user, info, ch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('ZADD', nodes, 'GT', now_ms(ARGV[6]) + tonumber(ARGV[7]), ARGV[5])
redis.call('HSET', pu, user, info)
if redis.call('HSETNX', pc, client, user) == 0 then return 0 end
redis.call('HSET', node, client .. '\n' .. ch, user)
if redis.call('HINCRBY', pk, user, 1) > 1 then return 0 end
event(live, 'join', user, redis.call('HLEN', pu), {i = info})
return 1
"""
)

#: KEYS pc, pu, pk, ps, pt, node, live.  ARGV client, user, ch.
LEAVE = (
    _COMMON
    + _PRESENCE
    + r"""
return leave(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7],
             ARGV[1], ARGV[3], ARGV[2])
"""
)

#: KEYS pu, ps, pt, live.  ARGV user, state ('' with ARGV[3] = '0' clears), has state (0|1),
#: ttl ms ('' for none), ttl in seconds as given, now.
#: Returns the state's deadline token ('' when none), or false when the user isn't present.
STATE = (
    _COMMON
    + _PRESENCE
    + r"""
local pu, ps, pt, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user = ARGV[1]
if redis.call('HEXISTS', pu, user) == 0 then return false end
local count = redis.call('HLEN', pu)
if ARGV[3] == '0' then
  redis.call('HDEL', ps, user)
  redis.call('HDEL', pt, user)
  event(live, 'state', user, count)
  return ''
end
redis.call('HSET', ps, user, ARGV[2])
local deadline = ''
if ARGV[4] ~= '' then
  deadline = tostring(now_ms(ARGV[6]) + tonumber(ARGV[4]))
  redis.call('HSET', pt, user, deadline)
  event(live, 'state', user, count, {s = ARGV[2], t = tonumber(ARGV[5])})
else
  redis.call('HDEL', pt, user)
  event(live, 'state', user, count, {s = ARGV[2]})
end
return deadline
"""
)

#: KEYS pu, ps, pt, live.  ARGV user, deadline token.
#: Clears the state if it is still the one that expires at that deadline.
EXPIRE_STATE = (
    _COMMON
    + _PRESENCE
    + r"""
local pu, ps, pt, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('HGET', pt, ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', ps, ARGV[1])
redis.call('HDEL', pt, ARGV[1])
event(live, 'state', ARGV[1], redis.call('HLEN', pu))
return 1
"""
)

#: KEYS pu, pk, ps, pt, pv.  ARGV max users (-1: no limit), now.
#: Returns {count, seq} beyond max users, else
#: {count, seq, user, info, clients, state or false, ...}.
SNAPSHOT = (
    _COMMON
    + r"""
local pu, pk, ps, pt = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local count = redis.call('HLEN', pu)
local seq = tonumber(redis.call('GET', KEYS[5]) or '0')
local max = tonumber(ARGV[1])
if max >= 0 and count > max then return {count, seq} end
local now = now_ms(ARGV[2])
local out = {count, seq}
local users = redis.call('HGETALL', pu)
for i = 1, #users, 2 do
  local user = users[i]
  local state = redis.call('HGET', ps, user)
  local deadline = redis.call('HGET', pt, user)
  if state and deadline and tonumber(deadline) <= now then state = false end
  out[#out + 1] = user
  out[#out + 1] = users[i + 1]
  out[#out + 1] = redis.call('HGET', pk, user) or '0'
  out[#out + 1] = state or false
end
return out
"""
)

#: KEYS nodes.  ARGV node, now, node ttl ms.
#: Renews the node's deadline; returns up to 16 nodes whose deadline passed.
BEAT = (
    _COMMON
    + r"""
local now = now_ms(ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 16)
"""
)

#: KEYS nodes, node hash.  ARGV node, now, prefix, force (0|1).
#: Removes up to 1,000 presence entries of a dead node (or of this node when it
#: closes: force); returns how many are left, or -1 when the node is alive.
REAP = (
    _COMMON
    + _PRESENCE
    + r"""
local nodes, node, name, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[3]
if ARGV[4] ~= '1' then
  local deadline = redis.call('ZSCORE', nodes, name)
  if deadline and tonumber(deadline) > now_ms(ARGV[2]) then return -1 end
end
local entries = redis.call('HKEYS', node)
local done = 0
for _, key in ipairs(entries) do
  if done >= 1000 then break end
  local client, ch = string.match(key, '^([^\n]*)\n(.*)$')
  local p = prefix .. ':ch:' .. ch .. ':'
  leave(p .. 'pc', p .. 'pu', p .. 'pk', p .. 'ps', p .. 'pt', node, p .. 'live', client, ch, nil)
  redis.call('HDEL', node, key)
  done = done + 1
end
local left = #entries - done
if left == 0 then
  redis.call('DEL', node)
  redis.call('ZREM', nodes, name)
end
return left
"""
)
