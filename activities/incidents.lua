-- Write an incident's view, idempotently and in order: a retried or late write of an older
-- version never overwrites a newer one.
-- KEYS: view, site open set, camera open set, index, closed marker, open severity hash,
--       change counter
-- ARGV: view json, version, incident id, opened_ms, closed (0/1), closed_until_ms,
--       ttl_seconds (of a closed view), index_max, severity, rule severity
-- The closed marker is '<until ms>:<rule severity>' (older markers: '<until ms>').
-- Returns: {applied (0/1), counts of open incidents by severity as name, count, ...}
local current = redis.call('GET', KEYS[1])
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and decoded['version'] then
    if tonumber(decoded['version']) >= tonumber(ARGV[2]) then
      return {0}
    end
  end
end
local id = ARGV[3]
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[7]))
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[6], id)
  local marker = tonumber(string.match(redis.call('GET', KEYS[5]) or '0', '^%d+') or '0')
  if tonumber(ARGV[6]) > marker then
    redis.call('SET', KEYS[5], ARGV[6] .. ':' .. (ARGV[10] or '0'), 'EX', tonumber(ARGV[7]))
  end
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], tonumber(ARGV[4]), id)
  redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), id)
  redis.call('HSET', KEYS[6], id, ARGV[9])
end
redis.call('ZADD', KEYS[4], tonumber(ARGV[4]), id)
redis.call('INCR', KEYS[7])
local excess = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[8])
if excess > 0 then
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, excess - 1)
end
local counts = {}
for _, severity in ipairs(redis.call('HVALS', KEYS[6])) do
  counts[severity] = (counts[severity] or 0) + 1
end
local reply = {1}
for severity, count in pairs(counts) do
  table.insert(reply, severity)
  table.insert(reply, count)
end
return reply
