-- Track who uses prompt templates: distinct api keys, networks and accounts per epoch, for every
-- template of one slot group in a batch.
--
-- KEYS     per template: keys_cur, keys_prev, networks_cur, networks_prev, accounts_cur,
--          accounts_prev (HyperLogLogs, this and the previous content epoch)
-- ARGV     epoch_s, then a JSON array with one entry per template: [[api_key, network,
--          account or ""], ...]
-- Returns  per template {distinct keys, distinct networks, distinct accounts} over both epochs
--
-- HyperLogLogs keep this at a few kilobytes per template whatever the campaign's size.
local ttl = tonumber(ARGV[1]) * 2 + 60
-- unpack() has a stack limit: add in slices.
local function pfadd(key, members)
  for first = 1, #members, 500 do
    redis.call('PFADD', key, unpack(members, first, math.min(first + 499, #members)))
  end
  if #members > 0 then redis.call('EXPIRE', key, ttl) end
end
local results = {}
local k = 1
for _, uses in ipairs(cjson.decode(ARGV[2])) do
  local api_keys, networks, accounts = {}, {}, {}
  for _, use in ipairs(uses) do
    api_keys[#api_keys + 1] = use[1]
    networks[#networks + 1] = use[2]
    if use[3] ~= '' then accounts[#accounts + 1] = use[3] end
  end
  pfadd(KEYS[k], api_keys)
  pfadd(KEYS[k + 2], networks)
  pfadd(KEYS[k + 4], accounts)
  results[#results + 1] = {
    redis.call('PFCOUNT', KEYS[k], KEYS[k + 1]),
    redis.call('PFCOUNT', KEYS[k + 2], KEYS[k + 3]),
    redis.call('PFCOUNT', KEYS[k + 4], KEYS[k + 5]),
  }
  k = k + 6
end
return results
