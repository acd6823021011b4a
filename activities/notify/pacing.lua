-- One robot's pacing, shared by every worker (activities/notify/pacing.py explains the design).
-- KEYS (one hash tag, the robot's, so every key is in one Redis Cluster slot):
--   1 sent      sorted set: slot token -> send time (ms); the sliding windows' log
--   2 block     hash {until, reason, at}: the vendor said "too fast"; nothing goes until `until`
--   3 parked    hash: idempotency key -> Parked entry (JSON) of a message that could not go
--   4 taken     hash: idempotency key -> {state, digest, detail, at, entry} (JSON) of a parked
--               message a digest took: state 'sending', then 'sent' or 'unknown'
--   5 taken_at  sorted set: idempotency key -> when taken (ms), to forget old `taken` fields
-- ARGV[1] op, ARGV[2] now in ms ('' = this server's TIME), ARGV[3] ttl_ms of parked and taken
-- entries, then the op's own:
--
-- 'acquire' key, entry, token, guard_ms, n, (limit, span_ms) x n
--     A parked message already taken by a digest: {'taken', its JSON, now}. Blocked, or a
--     window full (each counted guard_ms longer than the vendor counts it): the entry is parked,
--     {'held', wait_ms, blocked 0|1, parked count}. Else a slot: token is logged in `sent` and
--     every other parked entry is taken for this digest: {'granted', entry...}.
-- 'settle' token, state, detail, key...   the digest's outcome for the keys it took
--     ('sent' or 'unknown'). Returns how many were settled.
-- 'restore' token, key...   the digest was certainly not delivered: its keys are parked again.
--     Returns how many.
-- 'block' ms, reason, entry or ''   the vendor said "too fast": nothing goes for ms (a longer
--     block already in place stays), entry parked. Returns {the block's end, now} (ms).
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local ttl = tonumber(ARGV[3])

local function park(entry)
  local key = cjson.decode(entry)['key']
  redis.call('HSET', KEYS[3], key, entry)
  redis.call('PEXPIRE', KEYS[3], ttl)
  return redis.call('HLEN', KEYS[3])
end

local function forget_old_taken()
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now - ttl, 'LIMIT', 0, 100)
  if #old > 0 then
    redis.call('HDEL', KEYS[4], unpack(old))
    redis.call('ZREM', KEYS[5], unpack(old))
  end
end

-- How long until every window has a free slot (0: now), and the longest span.
local function wait_for_slot(first)
  local guard = tonumber(ARGV[first])
  local n = tonumber(ARGV[first + 1])
  local wait, longest = 0, 0
  for i = 0, n - 1 do
    local limit = tonumber(ARGV[first + 2 + 2 * i])
    local span = tonumber(ARGV[first + 3 + 2 * i]) + guard
    if span > longest then longest = span end
    local from = '(' .. tostring(now - span)
    local count = redis.call('ZCOUNT', KEYS[1], from, '+inf')
    if count >= limit then
      -- the slot frees when the (count - limit + 1)-th oldest send in the window leaves it
      local leaving = redis.call('ZRANGEBYSCORE', KEYS[1], from, '+inf', 'WITHSCORES',
        'LIMIT', count - limit, 1)
      local w = tonumber(leaving[2]) + span - now
      if w > wait then wait = w end
    end
  end
  return wait, longest
end

local function take_parked(key, token)
  local all = redis.call('HGETALL', KEYS[3])
  redis.call('DEL', KEYS[3])
  local out = {'granted'}
  for i = 1, #all, 2 do
    if all[i] ~= key then
      local taken = {state = 'sending', digest = token, detail = '', at = now, entry = all[i + 1]}
      redis.call('HSET', KEYS[4], all[i], cjson.encode(taken))
      redis.call('ZADD', KEYS[5], now, all[i])
      table.insert(out, all[i + 1])
    end
  end
  if #out > 1 then
    redis.call('PEXPIRE', KEYS[4], ttl)
    redis.call('PEXPIRE', KEYS[5], ttl)
  end
  return out
end

if op == 'acquire' then
  local key, entry, token = ARGV[4], ARGV[5], ARGV[6]
  forget_old_taken()
  local taken = redis.call('HGET', KEYS[4], key)
  if taken then return {'taken', taken, now} end
  local blocked = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if blocked > now then
    return {'held', blocked - now, 1, park(entry)}
  end
  local wait, longest = wait_for_slot(7)
  -- No windows (a webhook without a rate: only a block holds it): its sends are not logged,
  -- and a log another channel of the same URL keeps is left as it is.
  if longest > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
  end
  if wait > 0 then
    return {'held', wait, 0, park(entry)}
  end
  if longest > 0 then
    redis.call('ZADD', KEYS[1], now, token)
    redis.call('PEXPIRE', KEYS[1], longest)
  end
  return take_parked(key, token)
end

if op == 'settle' or op == 'restore' then
  local token = ARGV[4]
  local first = op == 'settle' and 7 or 5
  local done = 0
  for i = first, #ARGV do
    local raw = redis.call('HGET', KEYS[4], ARGV[i])
    local taken = raw and cjson.decode(raw)
    if taken and taken['digest'] == token and taken['state'] == 'sending' then
      if op == 'settle' then
        taken['state'], taken['detail'], taken['at'] = ARGV[5], ARGV[6], now
        redis.call('HSET', KEYS[4], ARGV[i], cjson.encode(taken))
        redis.call('ZADD', KEYS[5], now, ARGV[i])
      else
        redis.call('HDEL', KEYS[4], ARGV[i])
        redis.call('ZREM', KEYS[5], ARGV[i])
        park(taken['entry'])
      end
      done = done + 1
    end
  end
  return done
end

if op == 'block' then
  local ms, reason, entry = tonumber(ARGV[4]), ARGV[5], ARGV[6]
  local finish = now + ms
  local current = tonumber(redis.call('HGET', KEYS[2], 'until') or '0')
  if current < finish then
    redis.call('HSET', KEYS[2], 'until', finish, 'reason', reason, 'at', now)
    redis.call('PEXPIRE', KEYS[2], ms)
  else
    finish = current
  end
  if entry ~= '' then park(entry) end
  return {finish, now}
end

return redis.error_reply('unknown pacing operation ' .. tostring(op))
