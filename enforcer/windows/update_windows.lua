-- Count a batch of events into the sliding windows of every subject in one slot group, exactly
-- once per (subject, event_id).
--
-- ARGV[1]      JSON header: [lateness_s, [[seconds, bucket_s], ...], n_counters, epoch_s,
--              field_cap, n_bands]
-- ARGV[2]      JSON subjects: per subject [templates (0/1), epoch_start, windows, events] where
--              windows lists the (1-based) header windows this subject keeps, and each event is
--              [event_id, ts, counter..., fingerprint, band...] (fingerprint and bands only with
--              templates on). JSON keeps a batch of thousands of events to two arguments, which
--              both sides encode and decode in C.
-- KEYS per subject: dedupe sorted set (event_id -> ts), window hash, and with templates on this
--              and the previous content epoch's template hash and fingerprint HyperLogLog
-- Returns      one array per subject: {accepted, duplicates, too_late, watermark, sums...,
--              [template_share, band_share, distinct_ratio]}; the watermark (the subject's newest
--              event time) and the shares are strings; sums run window by window, counter by
--              counter, with three cadence counters appended (gaps counted, gap sum and
--              squared-gap sum, in centiseconds).
--
-- Windows follow event time: the subject's watermark is "now". An event older than
-- watermark - lateness is refused, which is also how far back the dedupe set reaches, so a
-- redelivered event is either found in the set or refused as late: never counted twice.
--
-- The window hash keeps, per window, a running total ("<s>:t") and the buckets inside the window
-- ("<s>:<bucket>"), each a msgpack array of counters, plus the lowest live bucket ("<s>:lo"), the
-- watermark ("wm") and when the dedupe set was last trimmed ("trim"). A batch adds to its buckets and totals and subtracts buckets that slid
-- out, so reading a window costs one field, not a scan of its buckets.
local header = cjson.decode(ARGV[1])
local lateness = header[1]
local n_windows = #header[2]
local seconds, bucket, n_buckets = {}, {}, {}
for w = 1, n_windows do
  seconds[w] = header[2][w][1]
  bucket[w] = header[2][w][2]
  n_buckets[w] = math.floor(seconds[w] / bucket[w])
end
local n_counters, epoch_s, field_cap, n_bands = header[3], header[4], header[5], header[6]
-- Field names that do not depend on the subject, built once per call.
local lo_field, total_field, bucket_prefix = {}, {}, {}
local meta_fields = {'wm', 'trim'}
for w = 1, n_windows do
  lo_field[w] = seconds[w] .. ':lo'
  total_field[w] = seconds[w] .. ':t'
  bucket_prefix[w] = seconds[w] .. ':'
  meta_fields[#meta_fields + 1] = lo_field[w]
  meta_fields[#meta_fields + 1] = total_field[w]
end
local width = n_counters + 3
local longest = 0
for w = 1, n_windows do if seconds[w] > longest then longest = seconds[w] end end
local ttl = math.ceil(longest + lateness + 60)

local zeros
if width == 9 then
  -- The usual width, built by a constructor: far cheaper than a fill loop in Lua 5.1.
  zeros = function() return {0, 0, 0, 0, 0, 0, 0, 0, 0} end
else
  zeros = function()
    local t = {}
    for i = 1, width do t[i] = 0 end
    return t
  end
end
local function unpacked(packed)
  if packed then return cmsgpack.unpack(packed) end
  return zeros()
end
local function call_sliced(cmd, key, items)
  for first = 1, #items, 500 do
    redis.call(cmd, key, unpack(items, first, math.min(first + 499, #items)))
  end
end

local function hmget_sliced(key, fields)
  local out = {}
  for first = 1, #fields, 500 do
    local part = redis.call('HMGET', key, unpack(fields, first, math.min(first + 499, #fields)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end

local function template_shares(k, fields, increments, fingerprints, epoch_start, watermark)
  local cur, prev, hll_cur, hll_prev = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local ask = {'n', 'mt', 'mb'}
  for i = 1, #fields do ask[#ask + 1] = fields[i] end
  local c = hmget_sliced(cur, ask)
  local p = hmget_sliced(prev, ask)
  local n = tonumber(c[1]) or 0
  local mt, mb = tonumber(c[2]) or 0, tonumber(c[3]) or 0
  local weight = 1 - math.min(math.max((watermark - epoch_start) / epoch_s, 0), 1)
  local top_t = math.max(mt, weight * (tonumber(p[2]) or 0))
  local top_b = math.max(mb, weight * (tonumber(p[3]) or 0))
  if #fields > 0 then
    -- A capped hash keeps a key with millions of distinct prompts small; the heavy hitters a
    -- share needs arrive early and often, so they are in it.
    local size = redis.call('HLEN', cur)
    local writes = {}
    for i = 1, #fields do
      local f = fields[i]
      local old = tonumber(c[3 + i])
      if old or size < field_cap then
        if not old then size = size + 1 end
        local new = (old or 0) + increments[f]
        writes[#writes + 1] = f
        writes[#writes + 1] = new
        local combined = new + weight * (tonumber(p[3 + i]) or 0)
        if string.sub(f, 1, 1) == 't' then
          if new > mt then mt = new end
          if combined > top_t then top_t = combined end
        else
          if new > mb then mb = new end
          if combined > top_b then top_b = combined end
        end
      end
    end
    n = n + #fingerprints
    writes[#writes + 1] = 'n'
    writes[#writes + 1] = n
    writes[#writes + 1] = 'mt'
    writes[#writes + 1] = mt
    writes[#writes + 1] = 'mb'
    writes[#writes + 1] = mb
    call_sliced('HSET', cur, writes)
    call_sliced('PFADD', hll_cur, fingerprints)
    redis.call('EXPIRE', cur, epoch_s * 2 + 60)
    redis.call('EXPIRE', hll_cur, epoch_s * 2 + 60)
  end
  if mt > top_t then top_t = mt end
  if mb > top_b then top_b = mb end
  local total = n + weight * (tonumber(p[1]) or 0)
  local raw_n = n + (tonumber(p[1]) or 0)
  if total <= 0 then return {'0', '0', '0'} end
  local distinct = redis.call('PFCOUNT', hll_cur, hll_prev)
  return {
    tostring(math.min(top_t / total, 1)),
    tostring(math.min(top_b / total, 1)),
    tostring(math.min(distinct / raw_n, 1)),
  }
end

local NONE = {}
local results = {}
local k = 1
for _, subject in ipairs(cjson.decode(ARGV[2])) do
  local templates = subject[1] == 1
  local epoch_start = subject[2]
  local wins = subject[3]
  local events = subject[4]
  local dedupe, hash = KEYS[k], KEYS[k + 1]

  local meta = redis.call('HMGET', hash, unpack(meta_fields))
  local watermark = tonumber(meta[1])

  local added = {}  -- per window: bucket -> counter increments
  for _, w in ipairs(wins) do added[w] = {} end
  local tpl_inc, tpl_fields, fingerprints = {}, {}, {}
  local accepted, duplicates, too_late = 0, 0, 0
  for _, ev in ipairs(events) do
    local id, ts = ev[1], ev[2]
    if watermark and ts < watermark - lateness then
      too_late = too_late + 1
    elseif redis.call('ZADD', dedupe, 'NX', ts, id) == 0 then
      duplicates = duplicates + 1
    else
      accepted = accepted + 1
      local gap = nil
      if watermark and ts > watermark then
        gap = math.min(math.floor((ts - watermark) * 100 + 0.5), 60000)
      end
      if not watermark or ts > watermark then watermark = ts end
      for _, w in ipairs(wins) do
        local b = math.floor(ts / bucket[w])
        local inc = added[w][b]
        if not inc then
          inc = zeros()
          added[w][b] = inc
        end
        for c = 1, n_counters do inc[c] = inc[c] + ev[2 + c] end
        if gap then
          inc[n_counters + 1] = inc[n_counters + 1] + 1
          inc[n_counters + 2] = inc[n_counters + 2] + gap
          inc[n_counters + 3] = inc[n_counters + 3] + gap * gap
        end
      end
      local base = 3 + n_counters
      -- A request without text has no template: it counts in the windows, not in the shares.
      if templates and ev[base] ~= '' then
        fingerprints[#fingerprints + 1] = ev[base]
        for b = 0, n_bands do
          local f = (b == 0 and 't:' or 'b:') .. ev[base + b]
          if not tpl_inc[f] then
            tpl_inc[f] = 0
            tpl_fields[#tpl_fields + 1] = f
          end
          tpl_inc[f] = tpl_inc[f] + 1
        end
      end
    end
  end

  local result = {accepted, duplicates, too_late, watermark and tostring(watermark) or ''}
  if accepted == 0 then
    for _, w in ipairs(wins) do
      local tot = unpacked(meta[2 * w + 2])
      for c = 1, width do result[#result + 1] = tot[c] end
    end
  else
    -- Which bucket fields this batch must read: those sliding out and those it adds to.
    local plan, ask = {}, {}
    for _, w in ipairs(wins) do
      local hi = math.floor(watermark / bucket[w])
      local lo = hi - n_buckets[w] + 1
      local old_lo = tonumber(meta[2 * w + 1]) or lo
      if old_lo > lo then lo = old_lo end
      local p = {lo = lo, tot = unpacked(meta[2 * w + 2]), expire = false, touch = {}}
      if lo > old_lo then
        local last = math.min(lo - 1, old_lo + n_buckets[w] - 1)
        if lo - old_lo >= n_buckets[w] then p.tot = zeros() end
        p.expire = {}
        for b = old_lo, last do
          local f = bucket_prefix[w] .. b
          p.expire[#p.expire + 1] = f
          if lo - old_lo < n_buckets[w] then ask[#ask + 1] = f end
        end
      end
      for b, inc in pairs(added[w]) do
        if b >= lo then
          local f = bucket_prefix[w] .. b
          p.touch[#p.touch + 1] = {f, inc}
          ask[#ask + 1] = f
        end
      end
      plan[w] = p
    end
    local have = {}
    if #ask > 0 then
      local values = redis.call('HMGET', hash, unpack(ask))
      for i = 1, #ask do have[ask[i]] = values[i] end
    end
    local writes, deletes = {'wm', watermark}, {}
    for _, w in ipairs(wins) do
      local p = plan[w]
      local tot = p.tot
      for _, f in ipairs(p.expire or NONE) do
        if have[f] then
          local old = cmsgpack.unpack(have[f])
          for c = 1, width do tot[c] = tot[c] - old[c] end
        end
        deletes[#deletes + 1] = f
      end
      for _, entry in ipairs(p.touch) do
        local f, inc = entry[1], entry[2]
        local cell = unpacked(have[f])
        for c = 1, width do
          cell[c] = cell[c] + inc[c]
          tot[c] = tot[c] + inc[c]
        end
        writes[#writes + 1] = f
        writes[#writes + 1] = cmsgpack.pack(cell)
      end
      writes[#writes + 1] = lo_field[w]
      writes[#writes + 1] = p.lo
      writes[#writes + 1] = total_field[w]
      writes[#writes + 1] = cmsgpack.pack(tot)
      for c = 1, width do result[#result + 1] = tot[c] end
    end
    -- The dedupe set is trimmed once per `lateness` of event time, not on every batch.
    local trimmed = tonumber(meta[2])
    if not trimmed or watermark - trimmed >= lateness then
      redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', '(' .. tostring(watermark - lateness))
      writes[#writes + 1] = 'trim'
      writes[#writes + 1] = watermark
    end
    if #deletes > 0 then call_sliced('HDEL', hash, deletes) end
    call_sliced('HSET', hash, writes)
    redis.call('EXPIRE', hash, ttl)
    redis.call('EXPIRE', dedupe, ttl)
  end

  if templates then
    local shares = {'0', '0', '0'}
    if watermark then
      shares = template_shares(k + 2, tpl_fields, tpl_inc, fingerprints, epoch_start, watermark)
    end
    for i = 1, 3 do result[#result + 1] = shares[i] end
    k = k + 6
  else
    k = k + 2
  end
  results[#results + 1] = result
end
return results
