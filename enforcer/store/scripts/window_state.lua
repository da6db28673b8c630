-- Part of update_windows.lua (the store's Script splices it in at its include line): the
-- state string of one subject, and the header's windows as the state lays them out.
-- Expects in scope: the decoded header and what it gives (header, n_windows, seconds, bucket,
-- slots, layout, n_counters), an unpacked event's ts position (at_ts), and the bound globals
-- (floor, ceil, sunpack, unpack).
--
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

-- A state in this layout begins with STATE_TAG; the state's head and each window's head (their
-- sizes in bytes beside them) come before the cells.
local STATE_TAG, STATE_HEAD, WINDOW_HEAD = 2, '<BdBI', '<III'
local STATE_HEAD_BYTES, WINDOW_HEAD_BYTES, CELL_BYTES = 14, 12, 4
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
