-- Part of update_windows.lua (the store's Script splices it in at its include line): a
-- subject's template shares, kept in capped hashes and HyperLogLogs per content epoch.
-- Expects in scope: KEYS, epoch_s, field_cap and the bound globals (call, min, max,
-- unpack, tonumber).

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
