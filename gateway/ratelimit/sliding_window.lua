-- The sliding-window log for a batch of requests, one after another. Each
-- request's checks are decided atomically: all pass and are counted, or none
-- is. The same algorithm as memory.py.
--
-- KEYS: every check's sorted set (admission times in µs as scores), request
--   after request, in the order of ARGV[1]
-- ARGV[1]: signed 64-bit little-endian integers (one argument, not one per
--   number: each argument costs the caller more to send than the script
--   to read): first 1 to return each check's admission (member), which a
--   caller deciding one request across several slots needs to take it back;
--   then for each request: 1 to count it when admitted (0 to only look), its
--   number of checks n, then n times: limit, period (µs), enforced (1/0)
-- Returns, for each request: allowed (1 or 0), retry_after_us, then for each
-- of its checks: remaining, reset_after_us, retry_after_us[, member ('' if
-- none)]. A request with a key of the wrong type gets -1 and the error
-- instead, and counts nowhere; the other requests are decided as usual.
--
-- Time is Redis's (TIME), read once, so every gateway process shares one
-- clock and every admission of this call is at the same instant.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stamp = string.format('%.0f', now)

-- What this call knows of a key once it has trimmed it: how many admissions
-- are in the window and the oldest one's time. A key that several requests
-- of the batch check is trimmed and read once.
local cards, oldests, admitted = {}, {}, {}

local function load(key, period)
  local card = cards[key]
  if card then return card end
  local trimmed = redis.pcall('ZREMRANGEBYSCORE', key, '-inf', now - period)
  if type(trimmed) == 'table' and trimmed.err then
    -- One tenant's corrupt key is that tenant's error, not the batch's.
    if string.find(trimmed.err, 'WRONGTYPE', 1, true) then return nil, trimmed.err end
    error(trimmed)
  end
  card = redis.call('ZCARD', key)
  if card > 0 then
    oldests[key] = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
  end
  cards[key] = card
  return card
end

local function admit(key, period)
  -- A member names one admission. Several at this instant in one key, or
  -- one left by an earlier call in the same microsecond, get a suffix.
  local seq = admitted[key]
  local member = seq and (stamp .. '-' .. seq) or stamp
  seq = seq or 0
  while redis.call('ZADD', key, 'NX', now, member) == 0 do
    seq = seq + 1
    member = stamp .. '-' .. seq
  end
  if not admitted[key] then
    redis.call('PEXPIRE', key, math.ceil(period / 1000) + 1)
  end
  admitted[key] = seq + 1
  local card = cards[key] + 1
  cards[key] = card
  if card == 1 then oldests[key] = now end
  return member
end

local blob, pos = ARGV[1], 1
local function int()
  local value
  value, pos = struct.unpack('<i8', blob, pos)
  return value
end

local with_members = int() == 1
local out = {}
local k = 0
while pos <= #blob do
  local count_it = int() == 1
  local n = int()
  local limits, periods, waits = {}, {}, {}
  local retry, fault = 0, nil
  for i = 1, n do
    local key, limit, period, enforced = KEYS[k + i], int(), int(), int()
    limits[i], periods[i] = limit, period
    -- After a fault the rest of the request is only read past.
    if not fault then
      local card, err = load(key, period)
      if card then
        local excess = card - limit
        local wait = 0
        if excess >= 0 then
          -- The admission whose departure brings the count below the limit.
          local nth = oldests[key]
          if excess > 0 then
            nth = tonumber(redis.call('ZRANGE', key, excess, excess, 'WITHSCORES')[2])
          end
          wait = nth + period - now
          if enforced == 1 and wait > retry then retry = wait end
        end
        waits[i] = wait
      else
        fault = err
      end
    end
  end
  if fault then
    out[#out + 1] = -1
    out[#out + 1] = fault
  else
    local allowed = retry == 0
    out[#out + 1] = allowed and 1 or 0
    out[#out + 1] = retry
    for i = 1, n do
      local key = KEYS[k + i]
      local member = ''
      if allowed and count_it and waits[i] == 0 then member = admit(key, periods[i]) end
      local card = cards[key]
      local remaining = limits[i] - card
      if remaining < 0 then remaining = 0 end
      local reset = 0
      if card > 0 then reset = oldests[key] + periods[i] - now end
      out[#out + 1] = remaining
      out[#out + 1] = reset
      out[#out + 1] = waits[i]
      if with_members then out[#out + 1] = member end
    end
  end
  k = k + n
end
return out
