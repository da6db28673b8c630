-- Count one subject's batch of events into its sliding windows, exactly once per event_id.
--
-- KEYS[1]     the subject's dedupe sorted set: event_id -> event ts
-- KEYS[1+w]   one hash per window w: field "<bucket>:<counter>" -> sum
-- ARGV        lateness_s, n_windows, (seconds, bucket_s) per window, n_counters, counter names,
--             then per event: event_id, ts, one integer per counter
-- Returns     {accepted, duplicates, too_late, watermark, sums...}; watermark is the subject's
--             latest event time as a string ("" if none); sums run window by window, counter by
--             counter, over the window ending at the watermark.
--
-- Windows follow event time: the subject's watermark (its newest accepted ts) is "now". An event
-- older than watermark - lateness is refused, which is also how far back the dedupe set reaches,
-- so a redelivered event is either found in the set or refused as late: never counted twice.
local lateness = tonumber(ARGV[1])
local n_windows = tonumber(ARGV[2])
local pos = 3
local seconds, bucket = {}, {}
for w = 1, n_windows do
  seconds[w] = tonumber(ARGV[pos])
  bucket[w] = tonumber(ARGV[pos + 1])
  pos = pos + 2
end
local n_counters = tonumber(ARGV[pos])
pos = pos + 1
local counters = {}
for c = 1, n_counters do
  counters[c] = ARGV[pos]
  pos = pos + 1
end

local dedupe = KEYS[1]
local top = redis.call('ZRANGE', dedupe, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
local watermark = nil
if top[2] then watermark = tonumber(top[2]) end

-- Sum increments per field first: a batch often holds many events in the same bucket.
local increments = {}
for w = 1, n_windows do increments[w] = {} end
local accepted, duplicates, too_late = 0, 0, 0
local stride = 2 + n_counters
while pos <= #ARGV do
  local id = ARGV[pos]
  local ts = tonumber(ARGV[pos + 1])
  if watermark and ts < watermark - lateness then
    too_late = too_late + 1
  elseif redis.call('ZADD', dedupe, 'NX', ts, id) == 0 then
    duplicates = duplicates + 1
  else
    accepted = accepted + 1
    if not watermark or ts > watermark then watermark = ts end
    for w = 1, n_windows do
      local prefix = math.floor(ts / bucket[w]) .. ':'
      local inc = increments[w]
      for c = 1, n_counters do
        local v = tonumber(ARGV[pos + 1 + c])
        if v ~= 0 then
          local f = prefix .. counters[c]
          inc[f] = (inc[f] or 0) + v
        end
      end
    end
  end
  pos = pos + stride
end

local longest = 0
for w = 1, n_windows do
  for f, v in pairs(increments[w]) do redis.call('HINCRBY', KEYS[1 + w], f, v) end
  if seconds[w] > longest then longest = seconds[w] end
end

local result = {accepted, duplicates, too_late, watermark and tostring(watermark) or ''}
if not watermark then
  for _ = 1, n_windows * n_counters do result[#result + 1] = 0 end
  return result
end

local index = {}
for c = 1, n_counters do index[counters[c]] = c end
for w = 1, n_windows do
  local key = KEYS[1 + w]
  local hi = math.floor(watermark / bucket[w])
  local lo = hi - math.floor(seconds[w] / bucket[w]) + 1
  local sums = {}
  for c = 1, n_counters do sums[c] = 0 end
  local flat = redis.call('HGETALL', key)
  local stale = {}
  for i = 1, #flat, 2 do
    local f = flat[i]
    local sep = string.find(f, ':', 1, true)
    local b = tonumber(string.sub(f, 1, sep - 1))
    if b < lo then
      stale[#stale + 1] = f
    elseif b <= hi then
      local c = index[string.sub(f, sep + 1)]
      if c then sums[c] = sums[c] + tonumber(flat[i + 1]) end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  redis.call('EXPIRE', key, math.ceil(seconds[w] + lateness + bucket[w]))
  for c = 1, n_counters do result[#result + 1] = sums[c] end
end

redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', '(' .. tostring(watermark - lateness))
redis.call('EXPIRE', dedupe, math.ceil(longest + lateness))
return result
