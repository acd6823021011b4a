-- Charge one answer to a site's day and month: KEYS[1] the day's hash, KEYS[2] the month's
-- (riskflow.names.site_spend_key: one hash tag per site, so one slot on Redis Cluster).
-- ARGV: tokens, cost in millionths, the day's TTL and the month's TTL (seconds).
-- Returns {day tokens, day cost, month tokens, month cost} after the charge (integers).
local out = {}
for i = 1, 2 do
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'tokens', ARGV[1])
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'cost_micro', ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[2 + i])
end
return out
