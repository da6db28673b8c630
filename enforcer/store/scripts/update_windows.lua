-- Count a batch of events into the sliding windows of the subjects sent (those of one slot group
-- on a Redis Cluster, up to the store's SUBJECTS_PER_CALL of any groups on one Redis), exactly
-- once per (subject, event id).
--
-- ARGV[1]  JSON header: [lateness_s, [[seconds, bucket_s], ...], n_counters, epoch_s, field_cap,
--          n_bands, cadence (0/1), layout, [window layout, ...]]. Each event carries n_counters
--          counters; with cadence on, three cadence counters follow them. The layout says which
--          of the store's columns these are (bit i: its i-th column), so that a policy reload
--          that keeps other counters finds the ones it shares with the stored state. A window's
--          layout (a subset of the layout, one per header window) is what its buckets keep: a
--          window no rule reads a counter in does not store it.
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
--          counter over every column of the layout (0 where the window keeps none), the three
--          cadence counters last when kept (gaps counted, gap sum and squared-gap sum, in
--          centiseconds).
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
-- traffic is even within that one bucket). The whole state of a subject is one binary string:
-- one GET and one SET per subject and batch, and no per-bucket tables, because in Redis' Lua
-- every table, string and redis.call costs more than the arithmetic it feeds.
-- State, little-endian: <uint8 STATE_TAG, double watermark, uint8 n_windows, uint32 expiry set
-- at>, then per window <uint32 seconds, uint32 bucket_s, uint32 window layout>, then per window
-- its ring, slots x (its layout's columns) float32 cells. A window's newest bucket is the
-- watermark's: every window is moved up to it before a state is written. Cells are float32
-- because the string is kept per active subject and Redis rounds it up to an allocator size
-- class: counts (requests, flags) are exact below 2^24 per bucket, and a larger sum (tokens,
-- squared gaps) is rounded to 24 significant bits each time a batch writes it, a relative
-- error of at most 2^-24 per write. A window stored under another layout has its cells moved
-- to this one's columns when read (the counters both hold keep their sums, new ones start at
-- 0); a string that is not a whole state with this tag starts over.
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
-- A state in this layout begins with STATE_TAG; the state's head and each window's head (their
-- sizes in bytes beside them) come before the cells.
local STATE_TAG, STATE_HEAD, WINDOW_HEAD = 2, '<BdBI', '<III'
local STATE_HEAD_BYTES, WINDOW_HEAD_BYTES, CELL_BYTES = 14, 12, 4
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
-- The format of a whole state of n windows and `cells` cells: one unpack reads it, one pack
-- writes it.
local state_formats = {}
local function state_format(n, cells)
  local key = cells * 256 + n  -- n is a byte
  local f = state_formats[key]
  if not f then
    f = STATE_HEAD .. string.rep('III', n) .. string.rep('f', cells)
    state_formats[key] = f
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

-- The columns (0-based bit positions) a layout keeps, in order.
local columns_known = {}
local function columns_of(mask)
  local out = columns_known[mask]
  if out then return out end
  out = {}
  local bit, rest = 0, mask
  while rest > 0 do
    if rest % 2 == 1 then out[#out + 1] = bit end
    rest = floor(rest / 2)
    bit = bit + 1
  end
  columns_known[mask] = out
  return out
end

-- Per header window: its layout, its width, where each of its columns sits in this call's
-- layout (the reply's columns), and which event value each per-request column adds
-- (cell_of[i] gets ev[value_of[i]]), and the first cadence column (nil: not kept).
local in_layout = {}
for i, bit in ipairs(columns_of(layout)) do in_layout[bit] = i end
local win_layout, win_width, win_reply, cell_of, value_of, gap_cell = {}, {}, {}, {}, {}, {}
local win_full = {}  -- the window keeps every column of the layout: no column map to follow
for w = 1, n_windows do
  local mask = header[9] and header[9][w] or layout
  local reply, cells, values = {}, {}, {}
  for j, bit in ipairs(columns_of(mask)) do
    local c = in_layout[bit]
    assert(c, 'update_windows.lua: a window keeps a column its layout does not')
    reply[j] = c
    if c <= n_counters then
      cells[#cells + 1] = j
      values[#values + 1] = at_ts + c
    elseif not gap_cell[w] then
      gap_cell[w] = j
    end
  end
  win_layout[w], win_width[w], win_reply[w] = mask, #reply, reply
  cell_of[w], value_of[w] = cells, values
  win_full[w] = mask == layout
end

-- Where a state's windows sit, by its window heads (the bytes after the state head): the
-- cell count, the whole state's size, and per window {"seconds:bucket_s", layout, base},
-- where bucket b's column j of the window is value base + (b % slots) * width + j of the
-- unpacked state. Subjects share a few layouts, so each is worked out once per call.
local placements = {}
local function placement(heads, stored)
  local known = placements[heads]
  if known then return known end
  local windows, pos, cells = {}, 1, 0
  local base = 4 + 3 * stored  -- the unpacked state head and window heads come first
  for i = 1, stored do
    local s, bs, mask, after = sunpack(WINDOW_HEAD, heads, pos)
    pos = after
    local count = (ceil(s / bs) + 1) * #columns_of(mask)
    windows[i] = {s .. ':' .. bs, mask, base + cells}
    cells = cells + count
  end
  local by_name = {}
  for i, win in ipairs(windows) do by_name[win[1]] = {win[2], win[3], i} end
  known = {cells, STATE_HEAD_BYTES + #heads + cells * CELL_BYTES, windows, by_name}
  placements[heads] = known
  return known
end

-- A subject's stored state: its watermark, its windows by "seconds:bucket_s" as {layout, base,
-- order} (shared by every state of its placement: copy before changing it), when its expiry
-- was set, how many windows it holds, and the unpacked state with its
-- cell count. Anything but a whole state with this tag (absent, another format, cut short)
-- reads as no state: the subject starts over.
local none = {}
local function load(raw)
  if not raw or #raw < STATE_HEAD_BYTES or string.byte(raw, 1) ~= STATE_TAG then
    return nil, none
  end
  local stored = string.byte(raw, 10)  -- after the tag and the watermark
  local heads = string.sub(raw, STATE_HEAD_BYTES + 1, STATE_HEAD_BYTES + stored * WINDOW_HEAD_BYTES)
  if #heads ~= stored * WINDOW_HEAD_BYTES then return nil, none end
  local place = placement(heads, stored)
  if place[2] ~= #raw then return nil, none end
  local v = {sunpack(state_format(stored, place[1]), raw)}
  return v[2], place[4], v[4], stored, v, place[1]
end

-- Copy window w's cells, kept from `base` of `values` under the `stored` layout, to `into` from
-- `at`, in its own columns (the counters both layouts hold keep their sums, new ones stay 0).
local function copy_window(values, base, stored, into, at, w)
  local to_width = win_width[w]
  if stored == win_layout[w] then
    for i = 1, slots[w] * to_width do into[at + i] = values[base + i] end
    return
  end
  local at_stored = {}
  local stored_columns = columns_of(stored)
  for i, bit in ipairs(stored_columns) do at_stored[bit] = i end
  local from_width = #stored_columns
  local map = {}
  for j, bit in ipairs(columns_of(win_layout[w])) do map[j] = at_stored[bit] end
  for slot = 0, slots[w] - 1 do
    local from, to = base + slot * from_width, at + slot * to_width
    for j = 1, to_width do
      local column = map[j]
      if column then into[to + j] = values[from + column] end
    end
  end
end

-- A whole state holding the kept windows `kept` (keyed by their mask), all cells 0, with its
-- heads written: copied with one {unpack()} into a table of the right size (a table grown
-- one cell at a time is rehashed at every power of two), and each kept window's base in it.
local blanks = {}
local function blank(mask, kept)
  local known = blanks[mask]
  if not known then
    local state, bases = {STATE_TAG, 0, #kept, 0}, {}
    for i = 1, #kept do
      local w = kept[i]
      state[2 + 3 * i], state[3 + 3 * i], state[4 + 3 * i] = seconds[w], bucket[w], win_layout[w]
    end
    for i = 1, #kept do
      local w = kept[i]
      bases[i] = #state
      for _ = 1, slots[w] * win_width[w] do state[#state + 1] = 0 end
    end
    known = {state, bases, #state - 4 - 3 * #kept}
    blanks[mask] = known
  end
  return {unpack(known[1])}, known[2], known[3]
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
  local w = win[4]
  local cells, base, n, ww = win[1], win[2], slots[w], win_width[w]
  local steps = to - newest
  if steps > n then steps = n end
  for s = 1, steps do
    local off = base + ((newest + s) % n) * ww
    for j = 1, ww do cells[off + j] = 0 end
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

-- Every subject's reply row, back to back: packed once at the end, not per subject.
local out = {}
local added = {}  -- per dedupe set: members counted by this call
local k = 1
local templated = 0
for _, subject in ipairs(subjects) do
  local mask, templates, epoch_start, events = subject[1], subject[2], subject[3], subject[4]
  local state = KEYS[k]
  local watermark, found, stamped, stored, values, n_cells = load(call('GET', state) or nil)
  local kept = kept_windows(mask)
  local wins = {}
  -- The state is rewritten in place when it holds the windows kept, in the same order, each
  -- under its own layout; and the expiry it was written with still fits when it holds the
  -- same windows (the same longest one).
  local same_windows = stamped ~= nil and stored == #kept
  local in_place = same_windows
  for i = 1, #kept do
    local hit = found[window_name[kept[i]]]
    if not hit or hit[3] ~= i or hit[1] ~= win_layout[kept[i]] then
      in_place = false
      if not hit or hit[3] ~= i then same_windows = false end
    end
  end
  if in_place then
    for i = 1, #kept do
      local w = kept[i]
      -- Every stored window was moved up to the watermark's bucket before it was written.
      wins[i] = {values, found[window_name[w]][2], floor(watermark / bucket[w]), w}
    end
  else
    -- Written afresh in this call's layout; what the stored state holds of it is copied over.
    local state, bases, cells = blank(mask, kept)
    local unclaimed = {}
    for name, hit in pairs(found) do unclaimed[name] = hit end
    found = unclaimed
    for i = 1, #kept do
      local w = kept[i]
      local name = window_name[w]
      local hit = found[name]
      found[name] = nil  -- two windows of one length must not share cells
      if hit then
        copy_window(values, hit[2], hit[1], state, bases[i], w)
        wins[i] = {state, bases[i], floor(watermark / bucket[w]), w}
      else
        wins[i] = {state, bases[i], nil, w}
      end
    end
    values, n_cells = state, cells
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
          local off = win[2] + (b % slots[w]) * win_width[w]
          if win_full[w] then
            for c = 1, n_counters do cells[off + c] = cells[off + c] + ev[at_ts + c] end
          else
            local cells_at, values_at = cell_of[w], value_of[w]
            for j = 1, #cells_at do
              local at = off + cells_at[j]
              cells[at] = cells[at] + ev[values_at[j]]
            end
          end
          local g = gap and gap_cell[w]
          if g then
            g = off + g
            cells[g] = cells[g] + 1
            cells[g + 1] = cells[g + 1] + gap
            cells[g + 2] = cells[g + 2] + gap * gap
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

  local head = #out
  out[head + 1], out[head + 2], out[head + 3], out[head + 4] = accepted, duplicates, too_late, watermark or -1
  if watermark then
    for i = 1, #wins do
      local win = wins[i]
      local w = win[4]
      local bs, n, ww = bucket[w], slots[w], win_width[w]
      local now = floor(watermark / bs)
      -- A window new to the subject (a reload added it) is empty: its ring starts now.
      if not win[3] or now > win[3] then advance(win, now) end
      local cells, base, newest = win[1], win[2], win[3]
      local start = watermark - seconds[w]
      local oldest = floor(start / bs)
      local part = ((oldest + 1) * bs - start) / bs
      local at = #out
      local off = base + (oldest % n) * ww
      if newest - oldest == 4 then
        -- The usual ring (BUCKETS_PER_WINDOW buckets and the partial oldest) summed column by
        -- column, in the same order as below: a third fewer table reads and writes per cell.
        local o1, o2 = base + ((oldest + 1) % n) * ww, base + ((oldest + 2) % n) * ww
        local o3, o4 = base + ((oldest + 3) % n) * ww, base + ((oldest + 4) % n) * ww
        if win_full[w] then
          for c = 1, width do
            out[at + c] = part * cells[off + c] + cells[o1 + c] + cells[o2 + c] + cells[o3 + c]
              + cells[o4 + c]
          end
        else
          local reply = win_reply[w]
          for c = 1, width do out[at + c] = 0 end
          for j = 1, ww do
            out[at + reply[j]] = part * cells[off + j] + cells[o1 + j] + cells[o2 + j]
              + cells[o3 + j] + cells[o4 + j]
          end
        end
      elseif win_full[w] then
        for c = 1, width do out[at + c] = part * cells[off + c] end
        for b = oldest + 1, newest do
          off = base + (b % n) * width
          for c = 1, width do out[at + c] = out[at + c] + cells[off + c] end
        end
      else
        local reply = win_reply[w]
        for c = 1, width do out[at + c] = 0 end
        for j = 1, ww do out[at + reply[j]] = part * cells[off + j] end
        for b = oldest + 1, newest do
          off = base + (b % n) * ww
          for j = 1, ww do
            local o = at + reply[j]
            out[o] = out[o] + cells[off + j]
          end
        end
      end
    end
  else
    for _ = 1, #wins * width do out[#out + 1] = 0 end
  end

  if accepted > 0 then
    local expiry = 'EX'
    if same_windows and now - stamped < keep_for - ttl then
      expiry = 'KEEPTTL'  -- at least ttl is left
    else
      stamped = now
    end
    -- `values` is the state in this call's layout: read in place, or written afresh above.
    values[2], values[4] = watermark, stamped
    local packed = spack(state_format(#wins, n_cells), unpack(values, 1, 4 + 3 * #wins + n_cells))
    if expiry == 'EX' then
      call('SET', state, packed, 'EX', keep_for)
    else
      call('SET', state, packed, 'KEEPTTL')
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
end
for set, members in pairs(added) do
  call_sliced('SADD', KEYS[first_set + set], members)
  call('EXPIRE', KEYS[first_set + set], ttl)
end
local results = {}
for first = 1, #out, 4000 do
  local last = min(first + 3999, #out)
  results[#results + 1] = spack(doubles(last - first + 1), unpack(out, first, last))
end
return table.concat(results)
