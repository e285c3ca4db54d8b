-- The sliding-window log over several limits at once, atomically: all pass
-- and are counted, or none is. The same algorithm as memory.py.
--
-- KEYS[i]: the sorted set of limit i, admission times (µs) as scores
-- ARGV[1]: '1' to count an admitted request, '0' to only look
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]: limit i's count, period (µs), enforced ('1'/'0')
-- Returns {allowed, retry_after_us,
--          remaining_i, reset_after_us_i, retry_after_us_i, member_i, ...}
-- where member_i is the admission added to KEYS[i] ('' if none), so that a
-- caller deciding across several slots can take it back.
--
-- Time is Redis's (TIME), so every gateway process shares one clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local count_it = ARGV[1] == '1'
local n = #KEYS
local limits, periods, waits = {}, {}, {}
local retry = 0
for i = 1, n do
  local limit = tonumber(ARGV[3 * i - 1])
  local period = tonumber(ARGV[3 * i])
  limits[i], periods[i] = limit, period
  -- The window is (now - period, now].
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - period)
  local excess = redis.call('ZCARD', KEYS[i]) - limit
  local wait = 0
  if excess >= 0 then
    local nth = redis.call('ZRANGE', KEYS[i], excess, excess, 'WITHSCORES')
    wait = tonumber(nth[2]) + period - now
    if ARGV[3 * i + 1] == '1' and wait > retry then retry = wait end
  end
  waits[i] = wait
end
local allowed = retry == 0
local out = {allowed and 1 or 0, retry}
for i = 1, n do
  local member = ''
  if allowed and count_it and waits[i] == 0 then
    -- Scores are unique and increasing even when TIME repeats, so that a
    -- member names one admission.
    local at = now
    local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
    if last[2] and tonumber(last[2]) >= at then at = tonumber(last[2]) + 1 end
    member = string.format('%.0f', at)
    redis.call('ZADD', KEYS[i], member, member)
    redis.call('PEXPIRE', KEYS[i], math.ceil(periods[i] / 1000) + 1)
  end
  local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  local reset = 0
  if oldest[2] then reset = tonumber(oldest[2]) + periods[i] - now end
  local remaining = limits[i] - redis.call('ZCARD', KEYS[i])
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = waits[i]
  out[#out + 1] = member
end
return out
