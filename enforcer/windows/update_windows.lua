-- Count a batch of events into the sliding windows of every subject in one slot group, exactly
-- once per (subject, event id).
--
-- ARGV[1]  JSON header: [lateness_s, [[seconds, bucket_s], ...], n_counters, epoch_s, field_cap,
--          n_bands]
-- ARGV[2]  binary subjects, little-endian, back to back. Per subject a head
--          <uint32 window mask, uint8 templates, uint32 n_events, double epoch_start>, then
--          n_events events <8-byte event id digest, double ts, double counter...> in event-time
--          order. Bit w-1 of the mask says the subject keeps header window w.
-- ARGV[3]  (only when some subject tracks templates) JSON: per such subject, in order, one row
--          per event: [fingerprint, band...]
-- KEYS     per subject: dedupe sorted set (event id -> ts), window state string, and with
--          templates on this and the previous content epoch's template hash and fingerprint
--          HyperLogLog
-- Returns  one binary string: per subject, little-endian doubles <accepted, duplicates,
--          too_late, watermark (-1: none), sums..., [template_share, band_share,
--          distinct_ratio]>; sums run window by window (kept windows, header order), counter by
--          counter, with three cadence counters appended (gaps counted, gap sum and squared-gap
--          sum, in centiseconds).
--
-- Windows follow event time: the subject's watermark is "now". An event older than
-- watermark - lateness is refused, which is also how far back the dedupe set reaches, so a
-- redelivered event is either found in the set or refused as late: never counted twice.
--
-- A window of S seconds is a ring of ceil(S / bucket_s) + 1 buckets. Its sum is the buckets
-- wholly inside (watermark - S, watermark] plus the oldest bucket weighted by the share of it
-- the window still covers (the sliding-window-counter estimate rate limiters use: exact when
-- traffic is even within that one bucket). The whole state of a subject is one string of
-- doubles: one GET and one SET per subject and batch, and no per-bucket tables, because in
-- Redis' Lua every table, string and redis.call costs more than the arithmetic it feeds.
-- State: <width, watermark, trimmed_at, n_windows, then per window: seconds, bucket_s,
-- newest bucket, ring cells (slots x width)>.
local header = cjson.decode(ARGV[1])
local lateness = header[1]
local n_windows = #header[2]
local n_counters, epoch_s, field_cap, n_bands = header[3], header[4], header[5], header[6]
local width = n_counters + 3
local seconds, bucket, slots = {}, {}, {}
local longest = 0
for w = 1, n_windows do
  seconds[w] = header[2][w][1]
  bucket[w] = header[2][w][2]
  slots[w] = math.ceil(seconds[w] / bucket[w]) + 1
  if seconds[w] > longest then longest = seconds[w] end
end
local ttl = math.ceil(longest + lateness + 60)
local payload = ARGV[2]
local texts = ARGV[3] and cjson.decode(ARGV[3])

local event_format = '<c8d' .. string.rep('d', n_counters)
local next_at = n_counters + 3  -- struct.unpack returns the next read position last
local formats = {}
local function doubles(n)
  local f = formats[n]
  if not f then
    f = '<' .. string.rep('d', n)
    formats[n] = f
  end
  return f
end
local kept_of = {}
local function kept_windows(mask)
  local kept = kept_of[mask]
  if not kept then
    kept = {}
    for w = 1, n_windows do
      if math.floor(mask / 2 ^ (w - 1)) % 2 == 1 then kept[#kept + 1] = w end
    end
    kept_of[mask] = kept
  end
  return kept
end

-- A subject's stored windows, by "seconds:bucket_s": {cells, base, newest bucket}, where bucket
-- b's counter c sits at cells[base + (b % slots) * width + c]. Cells stay in the unpacked state
-- table: nothing is copied until the state is written back.
local function load(raw)
  local found = {}
  if not raw then return nil, nil, found end
  local v = {struct.unpack(doubles(#raw / 8), raw)}
  if v[1] ~= width then return nil, nil, found end  -- another counter layout: start over
  local at = 5
  for _ = 1, v[4] do
    local s, bs = v[at], v[at + 1]
    found[s .. ':' .. bs] = {v, at + 2, v[at + 2]}
    at = at + 3 + (math.ceil(s / bs) + 1) * width
  end
  return v[2], v[3], found
end

local function empty_cells(w)
  local cells = {}
  for i = 1, slots[w] * width do cells[i] = 0 end
  return cells
end

-- Move window `win` = {cells, base, newest, w} forward to bucket `to`, clearing the slots that
-- buckets newer than its newest reuse.
local function advance(win, to)
  local newest = win[3]
  if newest == nil then
    win[3] = to
    return
  end
  if to <= newest then return end
  local cells, base, n = win[1], win[2], slots[win[4]]
  local steps = to - newest
  if steps > n then steps = n end
  for s = 1, steps do
    local off = base + ((newest + s) % n) * width
    for c = 1, width do cells[off + c] = 0 end
  end
  win[3] = to
end

-- unpack() has a stack limit: long argument lists go in slices.
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
  if total <= 0 then return 0, 0, 0 end
  local distinct = redis.call('PFCOUNT', hll_cur, hll_prev)
  return math.min(top_t / total, 1), math.min(top_b / total, 1), math.min(distinct / raw_n, 1)
end

local results = {}
local k = 1
local pos = 1
local templated = 0
while pos <= #payload do
  local mask, templates, n_events, epoch_start, after_head = struct.unpack('<IBId', payload, pos)
  pos = after_head
  local dedupe, state = KEYS[k], KEYS[k + 1]
  local watermark, trimmed, found = load(redis.call('GET', state) or nil)
  local kept = kept_windows(mask)
  local wins = {}
  for i = 1, #kept do
    local w = kept[i]
    local hit = found[seconds[w] .. ':' .. bucket[w]]
    if hit then
      wins[i] = {hit[1], hit[2], hit[3], w}
    else
      wins[i] = {empty_cells(w), 0, nil, w}
    end
  end
  local rows
  if templates == 1 then
    templated = templated + 1
    rows = texts[templated]
  end

  local tpl_inc, tpl_fields, fingerprints = {}, {}, {}
  local accepted, duplicates, too_late = 0, 0, 0
  for e = 1, n_events do
    local ev = {struct.unpack(event_format, payload, pos)}
    pos = ev[next_at]
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
      for i = 1, #wins do
        local win = wins[i]
        local w = win[4]
        local b = math.floor(ts / bucket[w])
        advance(win, b)
        -- An event older than the ring is outside this window already.
        if b > win[3] - slots[w] then
          local cells = win[1]
          local off = win[2] + (b % slots[w]) * width
          for c = 1, n_counters do cells[off + c] = cells[off + c] + ev[2 + c] end
          if gap then
            cells[off + n_counters + 1] = cells[off + n_counters + 1] + 1
            cells[off + n_counters + 2] = cells[off + n_counters + 2] + gap
            cells[off + n_counters + 3] = cells[off + n_counters + 3] + gap * gap
          end
        end
      end
      -- A request without text has no template: it counts in the windows, not in the shares.
      local row = rows and rows[e]
      if row and row[1] ~= '' then
        fingerprints[#fingerprints + 1] = row[1]
        for b = 0, n_bands do
          local f = (b == 0 and 't:' or 'b:') .. row[1 + b]
          if not tpl_inc[f] then
            tpl_inc[f] = 0
            tpl_fields[#tpl_fields + 1] = f
          end
          tpl_inc[f] = tpl_inc[f] + 1
        end
      end
    end
  end

  local out = {accepted, duplicates, too_late, watermark or -1}
  if watermark then
    for i = 1, #wins do
      local win = wins[i]
      local w = win[4]
      local bs, n = bucket[w], slots[w]
      advance(win, math.floor(watermark / bs))
      local cells, base, newest = win[1], win[2], win[3]
      local start = watermark - seconds[w]
      local oldest = math.floor(start / bs)
      local part = ((oldest + 1) * bs - start) / bs
      local at = #out
      local off = base + (oldest % n) * width
      for c = 1, width do out[at + c] = part * cells[off + c] end
      for b = oldest + 1, newest do
        off = base + (b % n) * width
        for c = 1, width do out[at + c] = out[at + c] + cells[off + c] end
      end
    end
  else
    for _ = 1, #wins * width do out[#out + 1] = 0 end
  end

  if accepted > 0 then
    -- The dedupe set is trimmed once per `lateness` of event time, not on every batch.
    if not trimmed or watermark - trimmed >= lateness then
      redis.call('ZREMRANGEBYSCORE', dedupe, '-inf', '(' .. tostring(watermark - lateness))
      trimmed = watermark
    end
    local saved = {width, watermark, trimmed, #wins}
    for i = 1, #wins do
      local win = wins[i]
      local w = win[4]
      local cells, base = win[1], win[2]
      local at = #saved
      saved[at + 1] = seconds[w]
      saved[at + 2] = bucket[w]
      saved[at + 3] = win[3]
      at = at + 3
      for j = 1, slots[w] * width do saved[at + j] = cells[base + j] end
    end
    redis.call('SET', state, struct.pack(doubles(#saved), unpack(saved)), 'EX', ttl)
    redis.call('EXPIRE', dedupe, ttl)
  end

  if templates == 1 then
    local a, b, c = 0, 0, 0
    if watermark then
      a, b, c = template_shares(k + 2, tpl_fields, tpl_inc, fingerprints, epoch_start, watermark)
    end
    out[#out + 1] = a
    out[#out + 1] = b
    out[#out + 1] = c
    k = k + 6
  else
    k = k + 2
  end
  results[#results + 1] = struct.pack(doubles(#out), unpack(out))
end
return table.concat(results)
