-- GCRA (generic cell rate algorithm): one rate for a throttled subject, shared by every check
-- sidecar. The state is one number, the theoretical arrival time (TAT) of the next request.
--
-- KEYS[1]  the subject's throttle key (enforcer.windows.keys.throttle_key)
-- ARGV     interval_us (one request's share of time: 1e6 / rate),
--          tolerance_us (how far ahead of the rate a burst may run: (burst - 1) * interval_us)
-- Returns  {1, 0, ahead_us} when the request is within the rate,
--          {0, retry_after_us, ahead_us} when it is not; ahead_us is how far the TAT runs ahead
--          of now, from which the caller tells how much burst remains and when it is whole again
--
-- The clock is Redis' own (TIME), so sidecars on hosts with skewed clocks keep one schedule.
-- Only admitted requests write, so refused ones cost no state, and the key lapses once its
-- TAT is in the past (an idle subject starts again with a full burst).
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, math.ceil(allow_at - now), math.ceil(tat - now)}
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0, math.ceil(new_tat - now)}
