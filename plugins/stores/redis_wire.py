"""What the redis state store sends besides plain commands: the Lua scripts that take a
decision atomically on the server, and the JSON form of documents, rows and lease data.

Private to the redis store's modules (redis_store.py and its parts).
"""

from __future__ import annotations

import json

# Fencing: check every key first, write only when none is fenced: all or nothing.
_PUT_FENCED = """
local epoch = tonumber(ARGV[1])
local fenced = {}
for i = 3, #ARGV, 2 do
    local stored = redis.call('HGET', KEYS[2], ARGV[i])
    if stored and tonumber(stored) > epoch then fenced[#fenced + 1] = ARGV[i] end
end
if #fenced > 0 then return fenced end
for i = 3, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
end
redis.call('SADD', KEYS[3], ARGV[2])
return fenced
"""

_DELETE_FENCED = """
local epoch = tonumber(ARGV[1])
local fenced = {}
for i = 2, #ARGV do
    local stored = redis.call('HGET', KEYS[2], ARGV[i])
    if stored and tonumber(stored) > epoch then fenced[#fenced + 1] = ARGV[i] end
end
if #fenced > 0 then return fenced end
for i = 2, #ARGV do
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
end
return fenced
"""

# KEYS[1] the stream's key set, KEYS[2] the row counts, KEYS[3..] row sets of the keys
# named by ARGV[3..]; ARGV[1] the stream, ARGV[2] the exclusive upper bound.
_TRIM = """
local total = 0
for i = 3, #KEYS do
    total = total + redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('SREM', KEYS[1], ARGV[i]) end
end
if total > 0 then redis.call('HINCRBY', KEYS[2], ARGV[1], -total) end
return total
"""

# Leases are timed by the server's clock. Numbers go back as strings: Lua would cut a
# number reply to an integer. KEYS: holder, epoch, expires, data hashes, epoch counter.
_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

_ACQUIRE = (
    _CLOCK
    + """
local name = ARGV[1]
local holder = redis.call('HGET', KEYS[1], name)
local expires = tonumber(redis.call('HGET', KEYS[3], name) or '0')
local epoch, data
if holder and expires > now then
    if holder ~= ARGV[2] then return false end
    epoch = redis.call('HGET', KEYS[2], name)
    if ARGV[4] == '1' then
        data = ARGV[5]
        redis.call('HSET', KEYS[4], name, data)
    else
        data = redis.call('HGET', KEYS[4], name)
    end
else
    epoch = tostring(redis.call('INCR', KEYS[5]))
    if ARGV[4] == '1' then data = ARGV[5] else data = '{}' end
    redis.call('HSET', KEYS[1], name, ARGV[2])
    redis.call('HSET', KEYS[2], name, epoch)
    redis.call('HSET', KEYS[4], name, data)
end
local until_ = string.format('%.17g', now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[3], name, until_)
return {epoch, until_, data}
"""
)

_RELEASE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    for i = 1, 4 do redis.call('HDEL', KEYS[i], ARGV[1]) end
end
return 0
"""

_LEASES = (
    _CLOCK
    + """
local prefix = ARGV[1]
local found = {}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
    local name = all[i]
    if tonumber(all[i + 1]) > now and string.sub(name, 1, #prefix) == prefix then
        found[#found + 1] = name
        found[#found + 1] = redis.call('HGET', KEYS[1], name)
        found[#found + 1] = redis.call('HGET', KEYS[2], name)
        found[#found + 1] = all[i + 1]
        found[#found + 1] = redis.call('HGET', KEYS[4], name)
    end
end
return found
"""
)

_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_loads = json.loads
