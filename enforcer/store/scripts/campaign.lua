-- Track who uses prompt templates: distinct api keys, networks and accounts per epoch, for every
-- template of one slot group in a batch.
--
-- KEYS     per template: keys_cur, keys_prev, networks_cur, networks_prev, accounts_cur,
--          accounts_prev (HyperLogLogs, this and the previous content epoch)
-- ARGV     epoch_s, then per template: n_keys, n_networks, n_accounts, and that many distinct
--          keys, networks and accounts. Flat arguments go to PFADD as slices of ARGV: no JSON to
--          decode and no Lua table per use.
-- Returns  per template {distinct keys, distinct networks, distinct accounts} over both epochs
--          (keys 0 when the template sent none: see below)
--
-- HyperLogLogs keep this at a few kilobytes per template whatever the campaign's size.
local ttl = tonumber(ARGV[1]) * 2 + 60
-- Add ARGV[first..last] (unpack() has a stack limit: in slices). The expiry is set when the
-- HyperLogLog changed, which includes its creation: a key's lifetime runs from its epoch.
local function pfadd(key, first, last)
  local changed = 0
  for from = first, last, 500 do
    changed = changed + redis.call('PFADD', key, unpack(ARGV, from, math.min(from + 499, last)))
  end
  if changed > 0 then redis.call('EXPIRE', key, ttl) end
end
local results = {}
local k = 1
local at = 2
while at <= #ARGV do
  local n_keys, n_networks, n_accounts = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  at = at + 3
  pfadd(KEYS[k], at, at + n_keys - 1)
  at = at + n_keys
  pfadd(KEYS[k + 2], at, at + n_networks - 1)
  at = at + n_networks
  pfadd(KEYS[k + 4], at, at + n_accounts - 1)
  at = at + n_accounts
  -- Reworded-phrase sketches are counted by network and account only and send no keys: every
  -- other campaign sends at least one, so no keys means the keys part is not kept at all.
  local keys_count = 0
  if n_keys > 0 then keys_count = redis.call('PFCOUNT', KEYS[k], KEYS[k + 1]) end
  results[#results + 1] = {
    keys_count,
    redis.call('PFCOUNT', KEYS[k + 2], KEYS[k + 3]),
    redis.call('PFCOUNT', KEYS[k + 4], KEYS[k + 5]),
  }
  k = k + 6
end
return results
