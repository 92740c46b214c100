package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts of the store. Each runs atomically in Redis. Numbers that
// go back into Redis are formatted with %d: Lua 5.1 prints large numbers in
// exponent form. Keys other than KEYS are built from the prefix (ARGV), which
// a Redis Cluster would refuse; the store does not support one.

// metaScript marks a prefix as a wakeline store if it is not yet one, and
// returns its format and schema.
var metaScript = goredis.NewScript(`
redis.call('HSETNX', KEYS[1], 'format', ARGV[1])
redis.call('HSETNX', KEYS[1], 'schema', ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'format', 'schema')
return {v[1] or '', v[2] or ''}
`)

// appendScript stores a batch and the resume id, after checking the lease
// when a token is given. KEYS: head, log, ids, own, lease. ARGV: resume id,
// event count, stream name to add to own ("" for none), lease token ("" for
// none), then r, t, i, d of each event. Returns the first position.
var appendScript = goredis.NewScript(`
if ARGV[4] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[4] then
  return redis.error_reply('WAKELINE_LEASE_LOST')
end
local n = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
for j = 0, n - 1 do
  local b = 5 + 4 * j
  local pos = string.format('%d', last + j + 1)
  redis.call('XADD', KEYS[2], pos .. '-0', 'r', ARGV[b], 't', ARGV[b + 1], 'i', ARGV[b + 2], 'd', ARGV[b + 3])
  local id = ARGV[b + 2]
  if string.sub(id, 1, 1) == '1' then
    redis.call('HSET', KEYS[3], string.sub(id, 2), pos)
  end
end
redis.call('HSET', KEYS[1], 'last', string.format('%d', last + n), 'resume', ARGV[1])
if ARGV[3] ~= '' then
  redis.call('SADD', KEYS[4], ARGV[3])
end
return last + 1
`)

// headScript returns the resume id, the last position and the number of
// kept events. KEYS: head, log.
var headScript = goredis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'resume', 'last')
return {h[1] or '', h[2] or '0', redis.call('XLEN', KEYS[2])}
`)

// lookupScript returns the newest kept position of origin id ARGV[1], and
// the oldest kept position. KEYS: head, log, ids.
var lookupScript = goredis.NewScript(`
local pos = redis.call('HGET', KEYS[3], ARGV[1])
if not pos then return {'0', '0'} end
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local n = redis.call('XLEN', KEYS[2])
return {pos, string.format('%d', last - n + 1)}
`)

// trimScript removes the ARGV[2] oldest events if the oldest kept one is
// still ARGV[1] (else returns -1), and the index entries of their origin
// ids: ARGV[3..] are position and id pairs, each removed if the index still
// points at that position. KEYS: head, log, ids.
var trimScript = goredis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local n = redis.call('XLEN', KEYS[2])
local first, k = tonumber(ARGV[1]), tonumber(ARGV[2])
if n < k or last - n + 1 ~= first then return -1 end
for j = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[3], ARGV[j + 1]) == ARGV[j] then
    redis.call('HDEL', KEYS[3], ARGV[j + 1])
  end
end
redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', first + k) .. '-0')
return k
`)

// createScript stores a new device unless its id is taken. KEYS: dev,
// devices. ARGV: prefix, id, record, then upstream and stream pairs.
var createScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[3])
for j = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[j], ARGV[j + 1])
  redis.call('ZADD', ARGV[1] .. 'subs:' .. ARGV[j + 1], 0, ARGV[2])
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
`)

// updateScript replaces the record of a device if it is still ARGV[3] (0
// when the device is gone, -1 when the record changed), and brings its
// subscriptions along: an upstream dropped or moved to another stream loses
// its cursor and wake. KEYS: dev. ARGV: prefix, id, old record, new record,
// then upstream and stream pairs.
var updateScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'rec')
if not cur then return 0 end
if cur ~= ARGV[3] then return -1 end
local want = {}
for j = 5, #ARGV, 2 do want[ARGV[j]] = ARGV[j + 1] end
local h = redis.call('HGETALL', KEYS[1])
for j = 1, #h, 2 do
  if string.sub(h[j], 1, 2) == 's:' then
    local up = string.sub(h[j], 3)
    if want[up] ~= h[j + 1] then
      redis.call('ZREM', ARGV[1] .. 'subs:' .. h[j + 1], ARGV[2])
      redis.call('HDEL', KEYS[1], h[j], 'c:' .. up, 'w:' .. up)
    end
  end
end
for j = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[1], 's:' .. ARGV[j], ARGV[j + 1])
  redis.call('ZADD', ARGV[1] .. 'subs:' .. ARGV[j + 1], 0, ARGV[2])
end
redis.call('HSET', KEYS[1], 'rec', ARGV[4])
return 1
`)

// deleteScript removes a device, its subscriptions, and the logs and ids of
// its own streams, keeping their position counters. KEYS: dev, devices,
// own. ARGV: prefix, id.
var deleteScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local h = redis.call('HGETALL', KEYS[1])
for j = 1, #h, 2 do
  if string.sub(h[j], 1, 2) == 's:' then
    redis.call('ZREM', ARGV[1] .. 'subs:' .. h[j + 1], ARGV[2])
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
for _, s in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('UNLINK', ARGV[1] .. 'log:' .. s, ARGV[1] .. 'ids:' .. s)
  redis.call('HDEL', ARGV[1] .. 'head:' .. s, 'resume')
end
redis.call('DEL', KEYS[3])
return 1
`)

// cursorScript returns the cursor of a device for upstream ARGV[2], the last
// position and the number of kept events of its stream; nil when the device
// does not subscribe to it. KEYS: dev. ARGV: prefix, upstream.
var cursorScript = goredis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 's:' .. ARGV[2], 'c:' .. ARGV[2])
if not v[1] then return false end
local last = redis.call('HGET', ARGV[1] .. 'head:' .. v[1], 'last') or '0'
return {v[2] or '0', last, redis.call('XLEN', ARGV[1] .. 'log:' .. v[1])}
`)

// setCursorScript moves a cursor forward; 0 when the device does not
// subscribe to the upstream. KEYS: dev. ARGV: upstream, position.
var setCursorScript = goredis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 's:' .. ARGV[1], 'c:' .. ARGV[1])
if not v[1] then return 0 end
if tonumber(v[2] or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'c:' .. ARGV[1], ARGV[2])
end
return 1
`)

// claimScript claims a wake when none is outstanding or the outstanding one
// was claimed at or before the threshold (now - rewakeAfter). Times are
// "<unix seconds>:<nanoseconds>", compared as pairs: nanoseconds since 1970
// do not fit a double. Returns -1 when the device does not subscribe to the
// upstream, 0 when the claim is lost, 1 when won. KEYS: dev. ARGV:
// upstream, now seconds, now nanoseconds, threshold seconds, threshold
// nanoseconds.
var claimScript = goredis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 's:' .. ARGV[1], 'w:' .. ARGV[1])
if not v[1] then return -1 end
if v[2] then
  local s, ns = string.match(v[2], '^(-?%d+):(%d+)$')
  s, ns = tonumber(s), tonumber(ns)
  local ts, tns = tonumber(ARGV[4]), tonumber(ARGV[5])
  if s > ts or (s == ts and ns > tns) then return 0 end
end
redis.call('HSET', KEYS[1], 'w:' .. ARGV[1], ARGV[2] .. ':' .. ARGV[3])
return 1
`)

// clearScript ends an outstanding wake; 0 when the device does not
// subscribe to the upstream. KEYS: dev. ARGV: upstream.
var clearScript = goredis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 's:' .. ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'w:' .. ARGV[1])
return 1
`)
