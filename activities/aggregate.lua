-- Aggregate one assessment, idempotently: a retry never duplicates an alert, and a late,
-- older result never overwrites a newer `camera:<id>:latest`.
-- KEYS: marker, latest, alerts, history
-- ARGV: json, captured_ms, is_assessed(0/1), alert(0/1), alerts_max, history_entry,
--       history_max, ttl_seconds
local first = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[8]))
local updated = 0
if ARGV[3] == '1' then
  local current = redis.call('GET', KEYS[2])
  local newer = true
  if current then
    local ok, decoded = pcall(cjson.decode, current)
    if ok and type(decoded) == 'table' and decoded['captured_ms'] then
      newer = tonumber(decoded['captured_ms']) <= tonumber(ARGV[2])
    end
  end
  if newer then
    redis.call('SET', KEYS[2], ARGV[1])
    updated = 1
  end
end
local alerted = 0
if first then
  if ARGV[4] == '1' then
    redis.call('LPUSH', KEYS[3], ARGV[1])
    redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
    alerted = 1
  end
  if ARGV[3] == '1' then
    redis.call('LPUSH', KEYS[4], ARGV[6])
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[7]) - 1)
  end
end
return {first and 1 or 0, updated, alerted}
