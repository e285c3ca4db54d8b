-- Byte budgets: a sliding-window log of reserved bytes, the same algorithm
-- as memory_bytes.py (store.py says what a budget means).
--
-- Each budget (a subject and a rule) is two keys in one slot: a sorted set of
-- entries (member -> time in µs) and a hash of their sizes (member -> bytes)
-- whose field 'sum' is what the entries hold together. The sum is believed
-- only while the sorted set has entries.
--
-- ARGV[1] is the operation.
--
-- 'reserve', amount, mode, then per budget: limit, period (µs), granule
--   (µs), enforced (1/0). KEYS: per budget its sorted set, then its hash.
--   mode 'all': the whole amount or nothing; 'upto': as much of it as every
--   enforced budget holds, at least one byte; 'peek': as 'all', taking
--   nothing. Returns allowed (1/0), granted, retry_after_us (-1: never, the
--   amount is more than a budget), then per budget: remaining,
--   reset_after_us, retry_after_us, member ('' if nothing was taken), held.
--
-- 'refund', then per entry: member, bytes, period (µs). KEYS as for reserve.
--   Gives back up to that many bytes of the entry, unless it has left the
--   window already. Returns per entry the bytes given back.
--
-- Time is Redis's (TIME), read once, so every gateway process shares one
-- clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%.0f', now)
-- HMGET, HDEL and unpack take this many at a time (Lua's C stack is small).
local PAGE = 512

local function unpack_page(list, from)
  return unpack(list, from, math.min(from + PAGE - 1, #list))
end

-- The bytes the budget holds in (now - period, now], after dropping what
-- left the window.
local function trim(zset, sizes, period)
  local cutoff = now - period
  local gone = redis.call('ZRANGEBYSCORE', zset, '-inf', cutoff)
  if #gone > 0 then
    local freed = 0
    for i = 1, #gone, PAGE do
      for _, size in ipairs(redis.call('HMGET', sizes, unpack_page(gone, i))) do
        freed = freed + (tonumber(size) or 0)
      end
      redis.call('HDEL', sizes, unpack_page(gone, i))
    end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', cutoff)
    redis.call('HINCRBY', sizes, 'sum', -freed)
  end
  if redis.call('ZCARD', zset) == 0 then
    redis.call('DEL', sizes)
    return 0
  end
  return tonumber(redis.call('HGET', sizes, 'sum') or '0')
end

-- µs until ``need`` more bytes fit: 0 now, -1 never.
local function wait_for(zset, sizes, used, need, limit, period)
  if used + need <= limit then return 0 end
  if need > limit then return -1 end
  local excess, freed, start = used + need - limit, 0, 0
  while true do
    local page = redis.call('ZRANGE', zset, start, start + PAGE - 1, 'WITHSCORES')
    if #page == 0 then return -1 end
    local members = {}
    for i = 1, #page, 2 do members[#members + 1] = page[i] end
    local held = redis.call('HMGET', sizes, unpack(members))
    for j = 1, #members do
      freed = freed + (tonumber(held[j]) or 0)
      -- The entry whose departure makes room.
      if freed >= excess then return tonumber(page[2 * j]) + period - now end
    end
    start = start + PAGE
  end
end

-- Takes ``amount`` bytes; returns the entry that holds them. Reservations
-- within a granule of the newest entry join it, which then leaves the
-- window with the latest of them: never early, at most a granule late. It
-- keeps a budget to about period/granule entries however small the bodies.
local function take(zset, sizes, amount, period, granule)
  local newest = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  local member
  if #newest > 0 and now - tonumber(newest[2]) < granule then
    member = newest[1]
    if now > tonumber(newest[2]) then redis.call('ZADD', zset, now, member) end
  else
    member = stamp
    local seq = 0
    while redis.call('ZADD', zset, 'NX', now, member) == 0 do
      seq = seq + 1
      member = stamp .. '-' .. seq
    end
  end
  redis.call('HINCRBY', sizes, member, amount)
  redis.call('HINCRBY', sizes, 'sum', amount)
  local ttl = math.ceil(period / 1000) + 1
  redis.call('PEXPIRE', zset, ttl)
  redis.call('PEXPIRE', sizes, ttl)
  return member
end

local function oldest_reset(zset, period)
  local oldest = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if #oldest == 0 then return 0 end
  return tonumber(oldest[2]) + period - now
end

local function reserve()
  local amount, mode = tonumber(ARGV[2]), ARGV[3]
  local n = #KEYS / 2
  local limits, periods, granules, enforced, used, waits = {}, {}, {}, {}, {}, {}
  -- 'upto' needs room for one byte to grant anything.
  local need = mode == 'upto' and math.min(amount, 1) or amount
  local retry, granted = 0, amount
  for i = 1, n do
    local a = 3 + (i - 1) * 4
    limits[i], periods[i] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    granules[i], enforced[i] = tonumber(ARGV[a + 3]), ARGV[a + 4] == '1'
    used[i] = trim(KEYS[2 * i - 1], KEYS[2 * i], periods[i])
    waits[i] = wait_for(KEYS[2 * i - 1], KEYS[2 * i], used[i], need, limits[i], periods[i])
    if enforced[i] then
      if waits[i] == -1 or retry == -1 then
        retry = -1
      elseif waits[i] > retry then
        retry = waits[i]
      end
      if mode == 'upto' then granted = math.min(granted, math.max(limits[i] - used[i], 0)) end
    end
  end
  local allowed = retry == 0
  if not allowed or mode == 'peek' then granted = 0 end
  local out = {allowed and 1 or 0, granted, retry}
  for i = 1, n do
    local zset, sizes = KEYS[2 * i - 1], KEYS[2 * i]
    local member, held = '', 0
    if granted > 0 then
      -- A shadow budget takes what it holds of the grant.
      held = math.min(granted, math.max(limits[i] - used[i], 0))
      if enforced[i] then held = granted end
      if held > 0 then
        member = take(zset, sizes, held, periods[i], granules[i])
        used[i] = used[i] + held
      end
    end
    out[#out + 1] = math.max(limits[i] - used[i], 0)
    out[#out + 1] = oldest_reset(zset, periods[i])
    out[#out + 1] = waits[i]
    out[#out + 1] = member
    out[#out + 1] = held
  end
  return out
end

local function refund()
  local out = {}
  for i = 1, #KEYS / 2 do
    local zset, sizes = KEYS[2 * i - 1], KEYS[2 * i]
    local a = 1 + (i - 1) * 3
    local member, bytes, period = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local back = 0
    local score = redis.call('ZSCORE', zset, member)
    -- An entry that left the window gave its bytes back already.
    if score and tonumber(score) > now - period then
      local held = tonumber(redis.call('HGET', sizes, member) or '0')
      back = math.min(held, bytes)
      if back > 0 then
        if back == held then
          redis.call('ZREM', zset, member)
          redis.call('HDEL', sizes, member)
        else
          redis.call('HINCRBY', sizes, member, -back)
        end
        redis.call('HINCRBY', sizes, 'sum', -back)
        if redis.call('ZCARD', zset) == 0 then redis.call('DEL', sizes) end
      end
    end
    out[i] = back
  end
  return out
end

if ARGV[1] == 'reserve' then return reserve() end
if ARGV[1] == 'refund' then return refund() end
return redis.error_reply('byte_window: unknown operation ' .. tostring(ARGV[1]))
