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
-- So a redelivered event is either found or refused as late: never counted twice. One
-- SMISMEMBER and one SADD per set and call replace a ZADD per subject and event, which cost
-- more than all the counting.
--
-- A window of S seconds is a ring of ceil(S / bucket_s) + 1 buckets. Its sum is the buckets
-- wholly inside (watermark - S, watermark] plus the oldest bucket weighted by the share of it
-- the window still covers (the sliding-window-counter estimate rate limiters use: exact when
-- traffic is even within that one bucket). The whole state of a subject is one binary string:
-- one GET and one SET per subject and batch, and no per-bucket tables, because in Redis' Lua
-- every table, string and redis.call costs more than the arithmetic it feeds. That string's
-- layout is window_state.lua's; the template shares are template_shares.lua's. The store
-- splices both in at their include lines below (enforcer.store.client.Script).
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
-- include: window_state.lua
-- include: template_shares.lua

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
