-- GCRA over several limits at once, atomically: all pass and are counted,
-- or none is counted. The same algorithm as gateway/ratelimit/memory.py.
--
-- KEYS[i]: the key of limit i (all hash-tagged to one slot)
-- ARGV[2i-1], ARGV[2i]: limit i's emission interval and burst capacity, in
-- whole microseconds (see cell_micros in store.py), so that all arithmetic
-- here is on integers, exact in Lua's doubles.
-- Returns {allowed, retry_after_us, remaining_1, reset_after_us_1, ...}
--
-- Time is Redis's (TIME), so every gateway process shares one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local retry = 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local overshoot = tat + interval - now - capacity
  if overshoot > retry then retry = overshoot end
end
local allowed = retry <= 0
local out = {allowed and 1 or 0, retry}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed then
    tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  out[#out + 1] = math.floor((capacity - (tat - now)) / interval)
  out[#out + 1] = tat - now
end
return out
