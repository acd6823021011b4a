-- riskflow key pool: every operation is one atomic script against one Redis (or one Cluster
-- slot). Time is Redis' own clock (TIME), the one clock every worker shares.
--
-- Layout under prefix P (P carries the hash tag {pool}, so on a Cluster every key below
-- lives in one slot):
--   P:keys            set of key ids            P:cfg:<id>   hash qps rpm conc enabled group
--   P:gcfg:<group>    hash qps rpm              P:st:<id>    hash cooldown_until strikes disabled last_used
--   P:w:<id>          zset member -> call ms    P:gw:<grp>   zset member -> call ms (quota group)
--   P:inf:<id>        zset lease -> expiry ms   P:lease:<l>  hash key group exp calls
--   P:stats:<id>      hash of counters
--   P:tw:<id>         zset '<member>|<tokens>' -> ms   P:gtw:<grp>  the same for a quota group
--                     (tokens per minute: reserved at the grant, settled at release)
-- Every key the script touches is declared in KEYS (Redis Cluster requires it):
--   KEYS[1] P:keys, KEYS[2] P:lease:<the lease of ARGV[3]>, then for each key id of the layout
--   in its order P:cfg:<id> P:st:<id> P:w:<id> P:inf:<id> P:stats:<id> P:tw:<id>, then for
--   each quota group of the layout in its order P:gcfg:<group> P:gw:<group> P:gtw:<group>,
--   then P:guard (hash ms, at, gen: the window guard as last raised, when, how often), P:wfair (hash
--   camera -> the virtual start of its next waiter, ms), P:waiters (zset
--   waiter -> -severity * 1e13 + virtual start ms) and P:wseen (hash waiter -> last ask ms):
--   assessments waiting for a key, the most severe first, then by virtual start (start-time
--   fair queueing between cameras: a camera's next waiter starts `camera_fairness` ms after its
--   previous one, or at its first ask if later, so a camera with a backlog does not starve
--   another camera of the same severity; within a camera, the oldest first).
-- ARGV[1] is that layout, JSON {"keys": [[id, group], ...], "groups": [group, ...]}, read by the
-- caller from P:keys and each key's group; ARGV[2] the operation; ARGV[3..] its arguments.
-- When the pool's keys or groups changed since the caller read the layout, the script writes
-- nothing and answers the error 'STALE_KEYS ...': the caller reads the layout again and retries.
-- `load_layout` maps them: K.ids (every key id), K.group[id], and K.cfg/st/w/inf/stats[id],
-- K.gcfg/gw[group] (key names); a change to every key of a group iterates K.ids.
--
-- When the scheduler's pacing margin is set, sends are paced evenly against the per-second
-- limits (GCRA with no burst): a key's next send
-- is due one emission interval 1000/qps ms, stretched by the pacing margin, after its last (its
-- st hash field 'tat'), and a group's likewise (its gcfg hash field 'tat'). Even spacing keeps
-- every 1 s window of the provider under its limit with the margin spread over each interval,
-- instead of windows filled in bursts at their edges and a guard around them. The 60 s
-- windows are not paced (a minute's burst is allowed; 10 ms of guard is nothing to a minute).
--
-- A lease reserves a slot in the rate windows when it is granted (member = lease id, scored at
-- the grant); `stamp` moves that slot to the moment the request is really sent, and only if
-- every window still has room then, so the provider never sees more than the limits.

local function load_layout()
  local layout = cjson.decode(ARGV[1])
  local K = {ids = {}, group = {}, cfg = {}, st = {}, w = {}, inf = {}, stats = {}, tw = {},
             gcfg = {}, gw = {}, gtw = {}}
  local i = 3
  for _, entry in ipairs(layout['keys']) do
    local id = entry[1]
    K.ids[#K.ids + 1] = id
    K.group[id] = entry[2]
    K.cfg[id], K.st[id], K.w[id], K.inf[id], K.stats[id], K.tw[id] =
      KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3], KEYS[i + 4], KEYS[i + 5]
    i = i + 6
  end
  for _, group in ipairs(layout['groups']) do
    K.gcfg[group], K.gw[group], K.gtw[group] = KEYS[i], KEYS[i + 1], KEYS[i + 2]
    i = i + 3
  end
  return K
end

-- True when the pool's key set or a key's quota group differs from the declared layout.
local function stale(K)
  local members = redis.call('SMEMBERS', KEYS[1])
  if #members ~= #K.ids then return true end
  for _, id in ipairs(members) do
    if not K.cfg[id] then return true end
    local group = redis.call('HGET', K.cfg[id], 'group')
    if not group or group ~= K.group[id] then return true end
    if group ~= '' and not K.gcfg[group] then return true end
  end
  return false
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Entries of `zkey` in (now - width, +inf], excluding `self_member`, and when the window
-- has room for one more under `limit`: `now`, or the moment the blocking entry leaves.
local function window_free_at(zkey, now, width, limit, self_member)
  local low = '(' .. (now - width)
  local count = redis.call('ZCOUNT', zkey, low, '+inf')
  local self_in = false
  if self_member then
    local s = redis.call('ZSCORE', zkey, self_member)
    if s and tonumber(s) > now - width then
      count = count - 1
      self_in = true
    end
  end
  if count < limit then
    return now, count
  end
  local idx = count - limit
  local rows = redis.call('ZRANGEBYSCORE', zkey, low, '+inf', 'WITHSCORES', 'LIMIT', idx, 3)
  local i = 1
  while rows[i] do
    if not (self_in and rows[i] == self_member) then
      return tonumber(rows[i + 1]) + width, count
    end
    i = i + 2
  end
  return now + width, count
end

-- Tokens per minute: entries '<member>|<tokens>' scored at the call. Returns when `need` more
-- tokens fit under `limit` (now, or when enough of the oldest entries have left the minute;
-- a request larger than the whole limit goes when the minute is empty), and the tokens used.
local function tokens_free_at(zkey, now, guard, limit, need)
  redis.call('ZREMRANGEBYSCORE', zkey, '-inf', now - 60000 - guard)
  local rows = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #rows, 2 do
    used = used + (tonumber(string.match(rows[i], '|(%d+)$')) or 0)
  end
  if used + need <= limit then return now, used end
  local left = used
  for i = 1, #rows, 2 do
    left = left - (tonumber(string.match(rows[i], '|(%d+)$')) or 0)
    if left + need <= limit or left == 0 then
      return tonumber(rows[i + 1]) + 60000 + guard, used
    end
  end
  return now + 60000 + guard, used
end

-- When key `id` (and its group) could take one more call; also its spare-capacity fraction.
-- `need`: the tokens the call reserves (0: no token check).
local function key_free_at(K, id, now, guard, self_member, check_conc, need)
  if not K.cfg[id] then return nil, 'unknown', 0 end
  local cfg = redis.call('HMGET', K.cfg[id], 'qps', 'rpm', 'conc', 'enabled', 'group', 'tpm')
  if not cfg[1] then return nil, 'unknown', 0 end
  if cfg[4] ~= '1' then return nil, 'disabled', 0 end
  local st = redis.call('HMGET', K.st[id], 'cooldown_until', 'disabled')
  if st[2] and st[2] ~= '' then return nil, 'disabled', 0 end
  local qps, rpm, conc = tonumber(cfg[1]), tonumber(cfg[2]), tonumber(cfg[3])
  local w = K.w[id]
  redis.call('ZREMRANGEBYSCORE', w, '-inf', now - 60000 - guard)
  local free, why = now, 'ok'
  local cd = tonumber(st[1] or '0') or 0
  if cd > free then free, why = cd, 'cooling' end
  local f1, c1 = window_free_at(w, now, 1000 + guard, qps, self_member)
  local f60, c60 = window_free_at(w, now, 60000 + guard, rpm, self_member)
  if f1 > free then free, why = f1, 'qps' end
  if f60 > free then free, why = f60, 'rpm' end
  local spare = math.min(1 - c1 / qps, 1 - c60 / rpm)
  local tpm = tonumber(cfg[6] or '0') or 0
  if need > 0 and tpm > 0 then
    local ft, used = tokens_free_at(K.tw[id], now, guard, tpm, need)
    if ft > free then free, why = ft, 'tpm' end
    spare = math.min(spare, 1 - used / tpm)
  end
  if check_conc then
    local inf = K.inf[id]
    redis.call('ZREMRANGEBYSCORE', inf, '-inf', now)
    local used = redis.call('ZCARD', inf)
    if used >= conc then
      -- A release can free it sooner than the oldest lease's expiry: look again soon.
      local first = redis.call('ZRANGE', inf, 0, 0, 'WITHSCORES')
      local at = math.min(tonumber(first[2]), now + 200)
      if at > free then free, why = at, 'concurrency' end
    end
    spare = math.min(spare, 1 - used / conc)
  end
  local group = cfg[5]
  if group and group ~= '' and K.gcfg[group] then
    local g = redis.call('HMGET', K.gcfg[group], 'qps', 'rpm', 'tpm')
    local gtpm = tonumber(g[3] or '0') or 0
    if g[1] and need > 0 and gtpm > 0 then
      local gt, gused = tokens_free_at(K.gtw[group], now, guard, gtpm, need)
      if gt > free then free, why = gt, 'group_tpm' end
      spare = math.min(spare, 1 - gused / gtpm)
    end
    if g[1] then
      local gw = K.gw[group]
      redis.call('ZREMRANGEBYSCORE', gw, '-inf', now - 60000 - guard)
      local g1, gc1 = window_free_at(gw, now, 1000 + guard, tonumber(g[1]), self_member)
      local g60, gc60 = window_free_at(gw, now, 60000 + guard, tonumber(g[2]), self_member)
      if g1 > free then free, why = g1, 'group_qps' end
      if g60 > free then free, why = g60, 'group_rpm' end
      spare = math.min(spare, 1 - gc1 / tonumber(g[1]), 1 - gc60 / tonumber(g[2]))
    end
  end
  return free, why, spare, group
end

-- The keys sharing `id`'s quota group (the account); a key without a group is its own group.
-- Group-wide state lives in each member's own st hash: no key families of its own.
local function group_members(K, id, group)
  if not group or group == '' then return {id} end
  local members = {}
  for _, other in ipairs(K.ids) do
    if K.group[other] == group then members[#members + 1] = other end
  end
  return members
end

local function cool_until(st, until_ms)
  local old = tonumber(redis.call('HGET', st, 'cooldown_until') or '0') or 0
  if until_ms > old then redis.call('HSET', st, 'cooldown_until', until_ms) end
end

-- When key `id` and its group may send next (ms), and their emission intervals (ms; 0 for
-- no group).
local function pacing(K, id, group, margin)
  local key_gap = 1000 / tonumber(redis.call('HGET', K.cfg[id], 'qps')) * (1 + margin)
  local due = tonumber(redis.call('HGET', K.st[id], 'tat') or '0') or 0
  local group_gap = 0
  if group and group ~= '' and K.gcfg[group] then
    local g = redis.call('HMGET', K.gcfg[group], 'qps', 'tat')
    if g[1] then
      group_gap = 1000 / tonumber(g[1]) * (1 + margin)
      due = math.max(due, tonumber(g[2] or '0') or 0)
    end
  end
  return due, key_gap, group_gap
end

-- Replace a lease's token reservations by the tokens the provider reported (`used`; 0: none
-- reported, the estimate stays when a request was sent), scored at the first send.
local function settle_tokens(K, id, group, lease_id, calls, need, used)
  if need <= 0 then return end
  local windows = {K.tw[id]}
  if group ~= '' and K.gtw[group] then windows[2] = K.gtw[group] end
  local members = {lease_id .. '|' .. need}
  for n = 1, calls - 1 do members[#members + 1] = lease_id .. '#' .. n .. '|' .. need end
  if calls == 0 or used > 0 then
    for _, zkey in ipairs(windows) do
      local at = redis.call('ZSCORE', zkey, members[1])
      redis.call('ZREM', zkey, unpack(members))
      if at and used > 0 then redis.call('ZADD', zkey, at, lease_id .. '|' .. used) end
    end
  end
end

local BOOK_HORIZON_MS = 1000  -- a send slot is booked at most this far ahead

local GUARD, WFAIR, WAITERS, WSEEN = KEYS[#KEYS - 3], KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]

-- The window guard now, from its spec 'base,max,halving_ms' (ARGV): every 1 s and 60 s window
-- is counted that much longer, so that the jitter between the stamp (Redis' clock) and the
-- request's arrival at the provider cannot put one request too many in a provider window. A
-- rate-limit answer the windows did not foresee raises it (`raise_guard`); it falls back toward
-- `base` by half every `halving_ms`. Returns the guard, base and max (ms).
local function window_guard(spec, now)
  local b, m, h = string.match(spec or '', '^(%d+),(%d+),(%d+)$')
  local base, top, halving = tonumber(b) or 0, tonumber(m) or 0, tonumber(h) or 0
  local g = redis.call('HMGET', GUARD, 'ms', 'at')
  local raised, at = tonumber(g[1] or ''), tonumber(g[2] or '')
  if not raised or not at or raised <= base or halving <= 0 then return base, base, top end
  local decayed = base + (raised - base) * 0.5 ^ (math.max(now - at, 0) / halving)
  return math.floor(math.min(decayed, top) + 0.5), base, top
end

-- The guard's generation: raised this many times (a lease records the one it was stamped in).
local function guard_gen()
  return tonumber(redis.call('HGET', GUARD, 'gen') or '0') or 0
end

-- After a 429 for the rate: double the guard (at least base + 20 ms), up to its max; once per
-- burst: a request stamped in an earlier generation was judged by a guard already raised.
local function raise_guard(spec, now, stamped_gen)
  local gen = guard_gen()
  if stamped_gen and stamped_gen ~= gen then return 0 end
  local guard, base, top = window_guard(spec, now)
  local raised = math.min(top, math.max(guard * 2, base + 20))
  if raised > guard then
    redis.call('HSET', GUARD, 'ms', raised, 'at', now, 'gen', gen + 1)
    return raised
  end
  return 0
end

-- The queue position of `waiter` (its stored score, or the one it would get now). Positions
-- are unique: a waiter whose position another one already holds (two asking in the same ms)
-- queues 1 ms behind it, so one of two ties is never "not ahead" of the other both ways.
local function waiter_score(waiter, severity, camera, now)
  local score = tonumber(redis.call('ZSCORE', WAITERS, waiter))
  if score then return score end
  local start = now
  if camera ~= '' then
    start = math.max(now, tonumber(redis.call('HGET', WFAIR, camera) or '0') or 0)
  end
  score = -severity * 1e13 + start
  while redis.call('ZCOUNT', WAITERS, string.format('%.0f', score), string.format('%.0f', score)) > 0 do
    score = score + 1
  end
  return score
end

-- True when another waiter ahead of `score` is waiting (asked within `ttl` ms); waiters that
-- stopped asking are dropped.
local function waiting_ahead(now, ttl, score, waiter)
  local rows = redis.call('ZRANGEBYSCORE', WAITERS, '-inf', '(' .. string.format('%.0f', score),
    'LIMIT', 0, 20)
  for _, other in ipairs(rows) do
    if other ~= waiter then
      local seen = tonumber(redis.call('HGET', WSEEN, other) or '0') or 0
      if seen >= now - ttl then return true end
      redis.call('ZREM', WAITERS, other)
      redis.call('HDEL', WSEEN, other)
    end
  end
  return false
end

local op = ARGV[2]
local K = load_layout()
if stale(K) then
  return redis.error_reply('STALE_KEYS the key pool changed since its key list was read')
end
local now = now_ms()

if op == 'guard' then
  return window_guard(ARGV[4], now)
end

if op == 'acquire' then
  local lease_id, ttl = ARGV[3], tonumber(ARGV[4])
  -- Idempotent: a lease id granted before (and neither released nor expired) is answered
  -- with its grant again. A caller whose answer was lost (a reply that timed out, an activity
  -- completed after its timeout and retried) asks again with the same id and gets the lease
  -- it already holds, instead of a second one while the first keeps a slot until it expires.
  local held = redis.call('HMGET', KEYS[2], 'key', 'group', 'exp')
  if held[1] and tonumber(held[3]) > now then
    return {1, held[1], held[2], tonumber(held[3])}
  end
  local guard = window_guard(ARGV[5], now)
  -- ARGV[6]: JSON list of the quota groups a lease may come from ([]: any key)
  -- ARGV[7]: the tokens the call is estimated to use (reserved now, settled at release)
  local need = tonumber(ARGV[7] or '0') or 0
  local wanted = nil
  for _, g in ipairs(cjson.decode(ARGV[6] or '[]')) do
    wanted = wanted or {}
    wanted[g] = true
  end
  -- ARGV[8..14]: the waiter (assessment id, '' = none), its severity, the share of each key's
  -- capacity kept for severities >= ARGV[11], how long a waiter counts without asking (ms),
  -- its camera ('' = none) and the camera fairness interval (ms).
  local waiter, severity = ARGV[8] or '', tonumber(ARGV[9] or '0') or 0
  severity = math.max(0, math.min(math.floor(severity), 100))  -- scores stay exact integers
  local share, top = tonumber(ARGV[10] or '0') or 0, tonumber(ARGV[11] or '0') or 0
  local camera, fair_ms = ARGV[13] or '', tonumber(ARGV[14] or '0') or 0
  local score, blocked = 0, false
  if waiter ~= '' then
    score = waiter_score(waiter, severity, camera, now)
    blocked = waiting_ahead(now, tonumber(ARGV[12] or '0'), score, waiter)
  end
  local best, best_spare, best_used, best_group = nil, -1, 0, ''
  local earliest, earliest_why = nil, 'no keys configured'
  for _, id in ipairs(K.ids) do
    local own = K.group[id]
    if own == '' then own = 'key:' .. id end
    local free, why, spare, group = nil, 'not in the wanted quota groups', 0, ''
    if not wanted or wanted[own] then
      free, why, spare, group = key_free_at(K, id, now, guard, nil, true, need)
    end
    if free and free <= now and share > 0 and severity < top and spare <= share + 1e-9 then
      free, why = now + 100, 'reserved'  -- the rest is kept for the most severe
    end
    if free and free <= now and blocked then free, why = now + 100, 'priority' end
    if free and free <= now then
      local used = tonumber(redis.call('HGET', K.st[id], 'last_used') or '0')
      if spare > best_spare or (spare == best_spare and used < best_used) then
        best, best_spare, best_used, best_group = id, spare, used, group or ''
      end
    elseif free then
      if not earliest or free < earliest then earliest, earliest_why = free, why end
    elseif not earliest and earliest_why == 'no keys configured' then
      earliest_why = 'all keys disabled'
    end
  end
  if not best then
    if waiter ~= '' then
      local added = redis.call('ZADD', WAITERS, 'NX', string.format('%.0f', score), waiter)
      if added == 1 and camera ~= '' then
        redis.call('HSET', WFAIR, camera, string.format('%.0f', score + severity * 1e13 + fair_ms))
        redis.call('PEXPIRE', WFAIR, 3600000)
      end
      redis.call('HSET', WSEEN, waiter, now)
    end
    if not earliest then return {0, -1, earliest_why} end
    return {0, earliest - now, earliest_why}
  end
  if waiter ~= '' then
    redis.call('ZREM', WAITERS, waiter)
    redis.call('HDEL', WSEEN, waiter)
  end
  local exp = now + ttl
  redis.call('ZADD', K.w[best], now, lease_id)
  if best_group ~= '' then redis.call('ZADD', K.gw[best_group], now, lease_id) end
  if need > 0 then
    local tm = lease_id .. '|' .. need
    redis.call('ZADD', K.tw[best], now, tm)
    if best_group ~= '' then redis.call('ZADD', K.gtw[best_group], now, tm) end
  end
  redis.call('ZADD', K.inf[best], exp, lease_id)
  local lk = KEYS[2]
  redis.call('HSET', lk, 'key', best, 'group', best_group, 'exp', exp, 'calls', 0, 'tok', need)
  redis.call('PEXPIRE', lk, ttl)
  redis.call('HSET', K.st[best], 'last_used', now)
  redis.call('HINCRBY', K.stats[best], 'granted', 1)
  return {1, best, best_group, exp}
end

if op == 'stamp' then
  local lease_id, needed = ARGV[3], tonumber(ARGV[5] or '0')
  local guard = window_guard(ARGV[4], now)
  local margin = tonumber(ARGV[6] or '-1') or -1  -- negative: no pacing
  local lk = KEYS[2]
  local lease = redis.call('HMGET', lk, 'key', 'group', 'calls', 'exp')
  if not lease[1] then return {-1, 0, 'lease expired or released'} end
  local id, group, calls = lease[1], lease[2], tonumber(lease[3])
  -- The send is booked at the key's (and group's) next paced slot `at` when that is within
  -- the horizon: the caller waits until then and sends, and the next slot is one interval
  -- after `at` however late the caller wakes (no drift). Windows are checked as of `at`.
  local due, key_gap, group_gap = 0, 0, 0
  if margin >= 0 then due, key_gap, group_gap = pacing(K, id, group, margin) end
  local at = math.max(now, math.ceil(due))
  if at - now > BOOK_HORIZON_MS then
    return {0, at - now - BOOK_HORIZON_MS, 'pacing'}
  end
  -- A request must end before its lease does, or the key's concurrency could be exceeded.
  if tonumber(lease[4]) - at < needed then
    return {-1, 0, 'lease expires before the call could time out'}
  end
  -- The first call moves the grant's reserved slot; a repeated call needs a slot of its own.
  local member = lease_id
  if calls > 0 then member = lease_id .. '#' .. calls end
  local self_member = nil
  if calls == 0 then self_member = lease_id end
  local free, why = key_free_at(K, id, at, guard, self_member, false, 0)
  if not free then return {-1, 0, 'key ' .. why} end
  if free > at then return {0, free - now, why} end
  if key_gap > 0 then redis.call('HSET', K.st[id], 'tat', math.max(due, now) + key_gap) end
  if group_gap > 0 then redis.call('HSET', K.gcfg[group], 'tat', math.max(due, now) + group_gap) end
  redis.call('ZADD', K.w[id], at, member)
  if group ~= '' and K.gw[group] then redis.call('ZADD', K.gw[group], at, member) end
  -- The reserved tokens count from the send; a repeated call reserves as much again.
  local need = tonumber(redis.call('HGET', lk, 'tok') or '0') or 0
  if need > 0 then
    local tm = member .. '|' .. need
    redis.call('ZADD', K.tw[id], at, tm)
    if group ~= '' and K.gtw[group] then redis.call('ZADD', K.gtw[group], at, tm) end
  end
  redis.call('HSET', lk, 'calls', calls + 1, 'gen', guard_gen())
  redis.call('HINCRBY', K.stats[id], 'calls', 1)
  return {1, at, id, at - now}
end

if op == 'release' then
  local lease_id, outcome = ARGV[3], ARGV[4]
  local cooldown, base, max_cd, err_cd = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local tokens_in, tokens_out, detail = tonumber(ARGV[9]), tonumber(ARGV[10]), ARGV[11]
  local raised = 0  -- the new window guard (ms) when this answer raised it
  local lk = KEYS[2]
  local lease = redis.call('HMGET', lk, 'key', 'group', 'calls', 'tok', 'gen')
  if not lease[1] then return 0 end
  local id, group, calls = lease[1], lease[2], tonumber(lease[3])
  redis.call('DEL', lk)
  if not K.cfg[id] then return {1, 0} end  -- the key left the pool meanwhile: nothing else to free
  settle_tokens(K, id, group, lease_id, calls, tonumber(lease[4] or '0') or 0,
                tokens_in + tokens_out)
  redis.call('ZREM', K.inf[id], lease_id)
  local st, stats = K.st[id], K.stats[id]
  if calls == 0 then
    -- Never sent: hand the reserved slot back.
    redis.call('ZREM', K.w[id], lease_id)
    if group ~= '' and K.gw[group] then redis.call('ZREM', K.gw[group], lease_id) end
  end
  if outcome == 'ok' then
    redis.call('HSET', st, 'strikes', 0)
    redis.call('HINCRBY', stats, 'success', 1)
    redis.call('HINCRBY', stats, 'tokens_in', tokens_in)
    redis.call('HINCRBY', stats, 'tokens_out', tokens_out)
  elseif outcome == 'rate_limited' or outcome == 'rate_limited_group' then
    local strikes = redis.call('HINCRBY', st, 'strikes', 1)
    local cd = cooldown
    -- A negative cooldown: no Retry-After came, so back off on the key's own strikes.
    if cd < 0 then cd = math.min(base * 2 ^ (strikes - 1), max_cd) end
    local targets = {id}
    if outcome == 'rate_limited_group' then targets = group_members(K, id, group) end
    for _, member in ipairs(targets) do cool_until(K.st[member], now + cd) end
    redis.call('HINCRBY', stats, 'rate_limited', 1)
    redis.call('HINCRBY', stats, 'cooldown_ms', cd)
    -- Every send was within the windows: a 429 for the rate means arrivals at the provider
    -- were closer together than the stamps (or the provider counts tighter): guard more.
    raised = raise_guard(ARGV[12], now, tonumber(lease[5] or ''))
  elseif outcome == 'invalid_key' then
    redis.call('HSET', st, 'disabled', detail)
    redis.call('HINCRBY', stats, 'invalid', 1)
  elseif outcome == 'account_refused' then
    for _, member in ipairs(group_members(K, id, group)) do
      redis.call('HSET', K.st[member], 'disabled', detail)
    end
    redis.call('HINCRBY', stats, 'account_refused', 1)
  elseif outcome == 'error' then
    cool_until(st, now + err_cd)
    redis.call('HINCRBY', stats, 'errors', 1)
  elseif outcome == 'refused' then
    redis.call('HINCRBY', stats, 'refused', 1)
  end
  return {1, raised}
end

return redis.error_reply('unknown key pool operation ' .. tostring(op))
