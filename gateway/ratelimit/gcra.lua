-- GCRA over several limits at once, atomically: all pass and are counted,
-- or none is counted. The same algorithm as gateway/ratelimit/memory.py.
--
-- KEYS[i]: the key of limit i (all hash-tagged to one slot)
-- ARGV[2i-1], ARGV[2i]: limit i's count and period in microseconds
-- Returns {allowed, retry_after_us, remaining_1, reset_after_us_1, ...}
--
-- Time is Redis's (TIME), so every gateway process shares one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats, new_tats, intervals = {}, {}, {}
local retry = 0
for i = 1, n do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  tats[i], new_tats[i], intervals[i] = tat, tat + interval, interval
  -- Half an interval of tolerance: admissions come in whole intervals, and
  -- the float rounding of a long run of them must not cost the last one.
  local overshoot = new_tats[i] - now - period
  if overshoot > interval / 2 and overshoot > retry then retry = overshoot end
end
local allowed = retry == 0
local out = {allowed and 1 or 0, math.ceil(retry)}
for i = 1, n do
  local period = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed then
    tat = new_tats[i]
    redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((period - (tat - now)) / intervals[i] + 0.5)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(tat - now)
end
return out
