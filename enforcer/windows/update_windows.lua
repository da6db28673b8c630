-- Count one subject's batch of events into its sliding windows, exactly once per event_id.
--
-- KEYS[1]      the subject's dedupe sorted set: event_id -> event ts
-- KEYS[1+w]    one hash per window w: field "<bucket>:<counter>" -> sum
-- KEYS[...]    with templates on, four more: this and the previous content epoch's template
--              hash (field "t:<fingerprint>" or "b:<band>" -> count, "n" -> requests) and
--              their HyperLogLogs of distinct fingerprints
-- ARGV         lateness_s, n_windows, (seconds, bucket_s) per window, n_counters, counter
--              names, cadence (0/1), n_bands (-1 = templates off), epoch_s, epoch_start,
--              field_cap, then per event: event_id, ts, one integer per counter and, with
--              templates on, fingerprint and n_bands band keys
-- Returns      {accepted, duplicates, too_late, watermark, sums..., [template_share,
--              band_share, distinct_ratio]}: watermark is the subject's latest event time as
--              a string ("" if none); sums run window by window, counter by counter (cadence
--              adds the counters ng, gs, gq: gaps counted, gap sum and squared-gap sum in
--              centiseconds), over the window ending at the watermark; shares are strings.
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
local cadence = ARGV[pos] == '1'
local n_bands = tonumber(ARGV[pos + 1])
local epoch_s = tonumber(ARGV[pos + 2])
local epoch_start = tonumber(ARGV[pos + 3])
local field_cap = tonumber(ARGV[pos + 4])
pos = pos + 5
local templates = n_bands >= 0

local dedupe = KEYS[1]
local top = redis.call('ZRANGE', dedupe, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, 1, 'WITHSCORES')
local watermark = nil
if top[2] then watermark = tonumber(top[2]) end

-- Sum increments per field first: a batch often holds many events in the same bucket.
local increments = {}
for w = 1, n_windows do increments[w] = {} end
local function add(w, prefix, name, v)
  if v ~= 0 then
    local f = prefix .. name
    increments[w][f] = (increments[w][f] or 0) + v
  end
end
local tpl_counts, fingerprints, tpl_n = {}, {}, 0

local accepted, duplicates, too_late = 0, 0, 0
local stride = 2 + n_counters
if templates then stride = stride + 1 + n_bands end
while pos <= #ARGV do
  local id = ARGV[pos]
  local ts = tonumber(ARGV[pos + 1])
  if watermark and ts < watermark - lateness then
    too_late = too_late + 1
  elseif redis.call('ZADD', dedupe, 'NX', ts, id) == 0 then
    duplicates = duplicates + 1
  else
    accepted = accepted + 1
    local gap = nil
    if cadence and watermark and ts > watermark then
      gap = math.min(math.floor((ts - watermark) * 100 + 0.5), 60000)
    end
    if not watermark or ts > watermark then watermark = ts end
    for w = 1, n_windows do
      local prefix = math.floor(ts / bucket[w]) .. ':'
      for c = 1, n_counters do add(w, prefix, counters[c], tonumber(ARGV[pos + 1 + c])) end
      if gap then
        add(w, prefix, 'ng', 1)
        add(w, prefix, 'gs', gap)
        add(w, prefix, 'gq', gap * gap)
      end
    end
    local base = pos + 2 + n_counters
    -- A request without text has no template: it counts in the windows, not in the shares.
    if templates and ARGV[base] ~= '' then
      local fp = 't:' .. ARGV[base]
      tpl_counts[fp] = (tpl_counts[fp] or 0) + 1
      fingerprints[#fingerprints + 1] = ARGV[base]
      for b = 1, n_bands do
        local band = 'b:' .. ARGV[base + b]
        tpl_counts[band] = (tpl_counts[band] or 0) + 1
      end
      tpl_n = tpl_n + 1
    end
  end
  pos = pos + stride
end

local longest = 0
for w = 1, n_windows do
  for f, v in pairs(increments[w]) do redis.call('HINCRBY', KEYS[1 + w], f, v) end
  if seconds[w] > longest then longest = seconds[w] end
end

local all_counters = {}
for c = 1, n_counters do all_counters[c] = counters[c] end
if cadence then
  all_counters[#all_counters + 1] = 'ng'
  all_counters[#all_counters + 1] = 'gs'
  all_counters[#all_counters + 1] = 'gq'
end
local n_all = #all_counters

local result = {accepted, duplicates, too_late, watermark and tostring(watermark) or ''}
if not watermark then
  for _ = 1, n_windows * n_all do result[#result + 1] = 0 end
  if templates then
    result[#result + 1] = '0'
    result[#result + 1] = '0'
    result[#result + 1] = '0'
  end
  return result
end

local index = {}
for c = 1, n_all do index[all_counters[c]] = c end
for w = 1, n_windows do
  local key = KEYS[1 + w]
  local hi = math.floor(watermark / bucket[w])
  local lo = hi - math.floor(seconds[w] / bucket[w]) + 1
  local sums = {}
  for c = 1, n_all do sums[c] = 0 end
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
  for first = 1, #stale, 1000 do
    redis.call('HDEL', key, unpack(stale, first, math.min(first + 999, #stale)))
  end
  redis.call('EXPIRE', key, math.ceil(seconds[w] + lateness + bucket[w]))
  for c = 1, n_all do result[#result + 1] = sums[c] end
end

redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', '(' .. tostring(watermark - lateness))
redis.call('EXPIRE', dedupe, math.ceil(longest + lateness))

if templates then
  -- Template shares over a sliding content window, approximated from two fixed epochs: the
  -- previous epoch's counts are weighted by how much of it the window still covers.
  local cur, prev, hll_cur, hll_prev = KEYS[2 + n_windows], KEYS[3 + n_windows], KEYS[4 + n_windows], KEYS[5 + n_windows]
  if tpl_n > 0 then
    redis.call('HINCRBY', cur, 'n', tpl_n)
    local size = redis.call('HLEN', cur)
    for f, v in pairs(tpl_counts) do
      -- A capped hash keeps a key with millions of distinct prompts small; the heavy
      -- hitters a share needs arrive early and often, so they are in it.
      if size < field_cap or redis.call('HEXISTS', cur, f) == 1 then
        if redis.call('HINCRBY', cur, f, v) == v then size = size + 1 end
      end
    end
    for first = 1, #fingerprints, 1000 do
      redis.call('PFADD', hll_cur, unpack(fingerprints, first, math.min(first + 999, #fingerprints)))
    end
    redis.call('EXPIRE', cur, epoch_s * 2 + 60)
    redis.call('EXPIRE', hll_cur, epoch_s * 2 + 60)
  end
  local weight = 1 - math.min(math.max((watermark - epoch_start) / epoch_s, 0), 1)
  local totals = {}
  local n = 0
  for _, spec in ipairs({{cur, 1}, {prev, weight}}) do
    if spec[2] > 0 then
      local flat = redis.call('HGETALL', spec[1])
      for i = 1, #flat, 2 do
        local v = tonumber(flat[i + 1]) * spec[2]
        if flat[i] == 'n' then n = n + v else totals[flat[i]] = (totals[flat[i]] or 0) + v end
      end
    end
  end
  local top_t, top_b = 0, 0
  for f, v in pairs(totals) do
    local kind = string.sub(f, 1, 1)
    if kind == 't' and v > top_t then top_t = v end
    if kind == 'b' and v > top_b then top_b = v end
  end
  local distinct = redis.call('PFCOUNT', hll_cur, hll_prev)
  local raw_n = tonumber(redis.call('HGET', cur, 'n') or '0') + tonumber(redis.call('HGET', prev, 'n') or '0')
  if n > 0 then
    result[#result + 1] = tostring(math.min(top_t / n, 1))
    result[#result + 1] = tostring(math.min(top_b / n, 1))
  else
    result[#result + 1] = '0'
    result[#result + 1] = '0'
  end
  if raw_n > 0 then result[#result + 1] = tostring(math.min(distinct / raw_n, 1)) else result[#result + 1] = '0' end
end
return result
