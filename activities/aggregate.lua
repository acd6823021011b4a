-- Aggregate one assessment, one key (and its guard) at a time, so each step touches one
-- Redis Cluster slot and is idempotent on its own: a retry never duplicates an entry, and a
-- late, older result never overwrites a newer `camera:<id>:latest`.
-- ARGV[1] is the operation:
--
-- 'latest'    KEYS: camera:<id>:latest
--             ARGV: op, json, captured_ms, ttl_seconds
--             Writes json when the stored assessment is not newer in capture time; the key
--             expires ttl_seconds after the last write. Returns 1 when written, else 0.
-- 'push_once' KEYS: a capped list (alerts:<id>, camera:<id>:history), {<that list's name>}:seen
--             ARGV: op, assessment_id, entry, max_len, window_seconds, ttl_seconds
--             The guard is a sorted set of assessment ids pushed in the last window_seconds
--             (scored by Redis' clock in ms); its hash tag is the list's whole name, so both
--             share a slot. Pushes entry at the head once per assessment id, trims the list to
--             max_len, and lets the list expire ttl_seconds after its last push (the guard
--             window_seconds after). Returns 1 when pushed, else 0.
local op = ARGV[1]

if op == 'latest' then
  local current = redis.call('GET', KEYS[1])
  if current then
    local ok, decoded = pcall(cjson.decode, current)
    if ok and type(decoded) == 'table' and decoded['captured_ms'] then
      if tonumber(decoded['captured_ms']) > tonumber(ARGV[3]) then return 0 end
    end
  end
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[4]))
  return 1
end

if op == 'push_once' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local window_ms = tonumber(ARGV[5]) * 1000
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window_ms)
  if redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
  redis.call('ZADD', KEYS[2], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[2], window_ms)
  redis.call('LPUSH', KEYS[1], ARGV[3])
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
  return 1
end

return redis.error_reply('unknown aggregation operation ' .. tostring(op))
