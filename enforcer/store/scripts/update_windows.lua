-- Count a batch of events into the sliding windows of every subject in one slot group, exactly
-- once per (subject, event id).
--
-- ARGV[1]  JSON header: [lateness_s, [[seconds, bucket_s], ...], n_counters, epoch_s, field_cap,
--          n_bands, cadence (0/1), layout]. Each event carries n_counters counters; with cadence
--          on, three cadence counters follow them in every bucket. The layout says which of
--          the store's columns these are (bit i: its i-th column), so that a policy reload that
--          keeps other counters finds the ones it shares with the stored state.
-- ARGV[2]  binary subjects, little-endian, back to back. Per subject a head
--          <8-byte subject digest, uint32 window mask, uint8 templates, uint32 n_events,
--          double epoch_start>, then n_events events <uint16 dedupe set, 8-byte event id digest,
--          double ts, double counter...> in event-time order. Bit w-1 of the mask says the
--          subject keeps header window w; the dedupe set is an index into the last KEYS.
-- ARGV[3]  how many dedupe sets close KEYS
-- ARGV[4]  (only when some subject tracks templates) JSON: per such subject, in order, one row
--          per event: [fingerprint, band...]
-- KEYS     per subject: its window state string, and with templates on, this and the previous
--          content epoch's template hash and fingerprint HyperLogLog; then the dedupe sets
-- Returns  one binary string: per subject, little-endian doubles <accepted, duplicates,
--          too_late, watermark (-1: none), sums..., [template_share, band_share,
--          distinct_ratio]>; sums run window by window (kept windows, header order), counter by
--          counter, with the three cadence counters appended when kept (gaps counted, gap sum
--          and squared-gap sum, in centiseconds).
--
-- Windows follow event time: the subject's watermark is "now". An event is refused as too late
-- only when it is older than watermark - horizon, the longer of the lateness and the longest
-- window: no window holds it any more. Lateness within one source partition is the caller's
-- to judge; a subject fed by several partitions (an account's keys, a network) sees them
-- interleaved as fast as each is read, and a worker catching up on a backlog reads them at
-- different speeds, so a stricter bound here would refuse what an in-order replay counts.
-- A counted event's member (subject digest .. event digest) goes into the slot group's dedupe
-- set for its lateness epoch, floor(ts / lateness), which lives for the horizon and a minute
-- after its last write; a redelivered event, having the same ts, is looked up in the same set.
-- So a redelivered event is either found or refused as late: never counted twice. One SMISMEMBER and one SADD per set and call replace a ZADD per subject and
-- event, which cost more than all the counting.
--
-- A window of S seconds is a ring of ceil(S / bucket_s) + 1 buckets. Its sum is the buckets
-- wholly inside (watermark - S, watermark] plus the oldest bucket weighted by the share of it
-- the window still covers (the sliding-window-counter estimate rate limiters use: exact when
-- traffic is even within that one bucket). The whole state of a subject is one string of
-- doubles: one GET and one SET per subject and batch, and no per-bucket tables, because in
-- Redis' Lua every table, string and redis.call costs more than the arithmetic it feeds.
-- State: <-layout, watermark, n_windows, expiry set at, then per window: seconds, bucket_s,
-- newest bucket, ring cells (slots x width)>. A state written under another layout has its cells moved to this
-- one's columns when read (the counters both hold keep their sums, new ones start at 0); a
-- state that begins with a positive number predates recorded layouts and starts over.
-- REPLY_HEAD, TEMPLATE_SHARES and TEMPLATE_KEYS are declared ahead of this source by the store
-- (enforcer/store/codec.py describes the reply once); a script out of step with them stops here.
assert(REPLY_HEAD == 4 and TEMPLATE_SHARES == 3, 'update_windows.lua: reply layout differs from the store')
-- Globals are slow to reach from a script: the hot ones are bound once.
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max
local spack, sunpack, call = struct.pack, struct.unpack, redis.call
local unpack, tonumber = unpack, tonumber
local header = cjson.decode(ARGV[1])
local lateness = header[1]
local n_windows = #header[2]
local n_counters, epoch_s, field_cap, n_bands = header[3], header[4], header[5], header[6]
local cadence, layout = header[7] == 1, header[8]
local width = n_counters + (cadence and 3 or 0)
local seconds, bucket, slots = {}, {}, {}
local longest = 0
for w = 1, n_windows do
  seconds[w] = header[2][w][1]
  bucket[w] = header[2][w][2]
  slots[w] = ceil(seconds[w] / bucket[w]) + 1
  if seconds[w] > longest then longest = seconds[w] end
end
-- Older than this behind a subject's watermark, an event is in none of its windows.
local horizon = max(lateness, longest)
local window_name = {}
for w = 1, n_windows do window_name[w] = seconds[w] .. ':' .. bucket[w] end
-- A state must outlive its longest window after its last event. Setting the expiry on every
-- write (SET .. EX) made Redis drop and re-add the key's entry in its expiry table each time, a
-- fifth of this script's cost; so the expiry is set for 1.5 x that long, and a write keeps it
-- (KEEPTTL) until half of that has passed (by the server's clock, recorded in the state).
local ttl = ceil(longest + lateness + 60)
local keep_for = ceil(ttl * 1.5)
local now = tonumber(call('TIME')[1])
local payload = ARGV[2]
local n_sets = tonumber(ARGV[3])
local texts = ARGV[4] and cjson.decode(ARGV[4])
local first_set = #KEYS - n_sets

local event_format = '<Hc8d' .. string.rep('d', n_counters)
local at_ts = 3  -- in an unpacked event: set, digest, ts, counters..., next read position
local next_at = n_counters + 4
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
      if floor(mask / 2 ^ (w - 1)) % 2 == 1 then kept[#kept + 1] = w end
    end
    kept_of[mask] = kept
  end
  return kept
end

-- A subject's stored windows, by "seconds:bucket_s": {cells, base, newest bucket}, where bucket
-- b's counter c sits at cells[base + (b % slots) * width + c]. Cells stay in the unpacked state
-- table: nothing is copied until the state is written back.
-- The columns (0-based bit positions) a layout keeps, in order.
local function columns_of(mask)
  local out = {}
  local bit = 0
  while mask > 0 do
    if mask % 2 == 1 then out[#out + 1] = bit end
    mask = floor(mask / 2)
    bit = bit + 1
  end
  return out
end

-- For a state kept under `stored` layout: its width, and per column of this call's layout the
-- stored column holding the same counter (nil: not kept there).
local function remap_from(stored)
  local at_stored = {}
  local stored_columns = columns_of(stored)
  for i, bit in ipairs(stored_columns) do at_stored[bit] = i end
  local map = {}
  for i, bit in ipairs(columns_of(layout)) do map[i] = at_stored[bit] end
  return #stored_columns, map
end

local function load(raw)
  local found = {}
  if not raw then return nil, found, nil end
  local v = {sunpack(doubles(#raw / 8), raw)}
  if v[1] >= 0 then return nil, found, nil end  -- written before layouts were recorded
  local stored_width, map = width, nil
  if -v[1] ~= layout then stored_width, map = remap_from(-v[1]) end
  local at = 5
  for _ = 1, v[3] do
    local s, bs = v[at], v[at + 1]
    local n = ceil(s / bs) + 1
    if map then
      local cells = {}
      for slot = 0, n - 1 do
        local from, to = at + 2 + slot * stored_width, slot * width
        for c = 1, width do
          local column = map[c]
          cells[to + c] = column and v[from + column] or 0
        end
      end
      found[s .. ':' .. bs] = {cells, 0, v[at + 2]}
    else
      found[s .. ':' .. bs] = {v, at + 2, v[at + 2]}
    end
    at = at + 3 + n * stored_width
  end
  -- Cells moved to another layout cannot be written back in place.
  return v[2], found, (not map) and v or nil
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
    call(cmd, key, unpack(items, first, min(first + 499, #items)))
  end
end

local function hmget_sliced(key, fields)
  local out = {}
  for first = 1, #fields, 500 do
    local part = call('HMGET', key, unpack(fields, first, min(first + 499, #fields)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
  return out
end

local function template_shares(k, fields, increments, fingerprints, epoch_start, watermark)
  local cur, prev, hll_cur, hll_prev = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  -- hash fields: n (requests), mt and mb (the largest template and band count), then each
  -- fingerprint's count ('t...' templates, 'b...' bands)
  local ask = {'n', 'mt', 'mb'}
  for i = 1, #fields do ask[#ask + 1] = fields[i] end
  local c = hmget_sliced(cur, ask)
  local p = hmget_sliced(prev, ask)
  local n = tonumber(c[1]) or 0
  local most_t, most_b = tonumber(c[2]) or 0, tonumber(c[3]) or 0
  local weight = 1 - min(max((watermark - epoch_start) / epoch_s, 0), 1)
  local top_t = max(most_t, weight * (tonumber(p[2]) or 0))
  local top_b = max(most_b, weight * (tonumber(p[3]) or 0))
  if #fields > 0 then
    -- A capped hash keeps a key with millions of distinct prompts small; the heavy hitters a
    -- share needs arrive early and often, so they are in it.
    local size = call('HLEN', cur)
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
          if new > most_t then most_t = new end
          if combined > top_t then top_t = combined end
        else
          if new > most_b then most_b = new end
          if combined > top_b then top_b = combined end
        end
      end
    end
    n = n + #fingerprints
    writes[#writes + 1] = 'n'
    writes[#writes + 1] = n
    writes[#writes + 1] = 'mt'
    writes[#writes + 1] = most_t
    writes[#writes + 1] = 'mb'
    writes[#writes + 1] = most_b
    call_sliced('HSET', cur, writes)
    call_sliced('PFADD', hll_cur, fingerprints)
    call('EXPIRE', cur, epoch_s * 2 + 60)
    call('EXPIRE', hll_cur, epoch_s * 2 + 60)
  end
  if most_t > top_t then top_t = most_t end
  if most_b > top_b then top_b = most_b end
  local total = n + weight * (tonumber(p[1]) or 0)
  local raw_n = n + (tonumber(p[1]) or 0)
  if total <= 0 then return 0, 0, 0 end
  local distinct = call('PFCOUNT', hll_cur, hll_prev)
  return min(top_t / total, 1), min(top_b / total, 1), min(distinct / raw_n, 1)
end

-- Append `member` to lists[set], a list per dedupe set.
local function push(lists, set, member)
  local list = lists[set]
  if not list then
    list = {}
    lists[set] = list
  end
  list[#list + 1] = member
end

-- First pass: read every subject and event, and ask each dedupe set about all of its members
-- in one call.
local subjects = {}
local asked = {}  -- per dedupe set: members, in order
local pos = 1
while pos <= #payload do
  local digest, mask, templates, n_events, epoch_start, after_head =
    sunpack('<c8IBId', payload, pos)
  pos = after_head
  local events = {}
  for e = 1, n_events do
    local ev = {sunpack(event_format, payload, pos)}
    pos = ev[next_at]
    local member = digest .. ev[2]
    push(asked, ev[1], member)
    ev[2] = member
    events[e] = ev
  end
  subjects[#subjects + 1] = {mask, templates, epoch_start, events}
end
local known = {}  -- member -> true when already counted
for set, members in pairs(asked) do
  for first = 1, #members, 500 do
    local last = min(first + 499, #members)
    local flags = call('SMISMEMBER', KEYS[first_set + set], unpack(members, first, last))
    for i = 1, #flags do
      if flags[i] == 1 then known[members[first + i - 1]] = true end
    end
  end
end

local results = {}
local added = {}  -- per dedupe set: members counted by this call
local k = 1
local templated = 0
for _, subject in ipairs(subjects) do
  local mask, templates, epoch_start, events = subject[1], subject[2], subject[3], subject[4]
  local state = KEYS[k]
  local watermark, found, stored = load(call('GET', state) or nil)
  local kept = kept_windows(mask)
  local wins = {}
  -- The state is rewritten in place when its windows are the ones kept, in the same order.
  local in_place = stored ~= nil and stored[3] == #kept
  local last_base = 0
  for i = 1, #kept do
    local w = kept[i]
    local name = window_name[w]
    local hit = found[name]
    found[name] = nil  -- two windows of one length must not share cells
    if hit then
      wins[i] = {hit[1], hit[2], hit[3], w}
      if hit[2] <= last_base then in_place = false end
      last_base = hit[2]
    else
      wins[i] = {empty_cells(w), 0, nil, w}
      in_place = false
    end
  end
  local rows
  if templates == 1 then
    templated = templated + 1
    rows = texts[templated]
  end

  local tpl_inc, tpl_fields, fingerprints = {}, {}, {}
  local accepted, duplicates, too_late = 0, 0, 0
  for e = 1, #events do
    local ev = events[e]
    local member, ts = ev[2], ev[at_ts]
    if watermark and ts < watermark - horizon then
      too_late = too_late + 1
    elseif known[member] then
      duplicates = duplicates + 1
    else
      known[member] = true
      push(added, ev[1], member)
      accepted = accepted + 1
      local gap = nil
      if watermark and ts > watermark then
        gap = min(floor((ts - watermark) * 100 + 0.5), 60000)
      end
      if not watermark or ts > watermark then watermark = ts end
      for i = 1, #wins do
        local win = wins[i]
        local w = win[4]
        local b = floor(ts / bucket[w])
        local newest = win[3]
        if not newest or b > newest then advance(win, b) end
        -- An event older than the ring is outside this window already.
        if b > win[3] - slots[w] then
          local cells = win[1]
          local off = win[2] + (b % slots[w]) * width
          for c = 1, n_counters do cells[off + c] = cells[off + c] + ev[at_ts + c] end
          if gap and cadence then
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
      local now = floor(watermark / bs)
      -- A window new to the subject (a reload added it) is empty: its ring starts now.
      if not win[3] or now > win[3] then advance(win, now) end
      local cells, base, newest = win[1], win[2], win[3]
      local start = watermark - seconds[w]
      local oldest = floor(start / bs)
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
    local saved
    local expiry = 'EX'
    if in_place then
      saved = stored
      saved[#saved] = nil  -- the read position struct.unpack appended
      saved[2] = watermark
      for i = 1, #wins do saved[wins[i][2]] = wins[i][3] end
      if now - saved[4] < keep_for - ttl then
        expiry = 'KEEPTTL'  -- at least ttl is left
      else
        saved[4] = now
      end
    else
      saved = {-layout, watermark, #wins, now}
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
    end
    if expiry == 'EX' then
      call('SET', state, spack(doubles(#saved), unpack(saved)), 'EX', keep_for)
    else
      call('SET', state, spack(doubles(#saved), unpack(saved)), 'KEEPTTL')
    end
  end

  if templates == 1 then
    local a, b, c = 0, 0, 0
    if watermark then
      a, b, c = template_shares(k + 1, tpl_fields, tpl_inc, fingerprints, epoch_start, watermark)
    end
    out[#out + 1] = a
    out[#out + 1] = b
    out[#out + 1] = c
    k = k + 1 + TEMPLATE_KEYS
  else
    k = k + 1
  end
  results[#results + 1] = spack(doubles(#out), unpack(out))
end
for set, members in pairs(added) do
  call_sliced('SADD', KEYS[first_set + set], members)
  call('EXPIRE', KEYS[first_set + set], ttl)
end
return table.concat(results)
