-- Track who uses one prompt template: distinct api keys, networks and accounts per epoch.
--
-- KEYS     keys_cur, keys_prev, networks_cur, networks_prev, accounts_cur, accounts_prev
--          (HyperLogLogs of one template fingerprint, this and the previous content epoch)
-- ARGV     epoch_s, then per use: api_key, network, account ("" when none)
-- Returns  {distinct keys, distinct networks, distinct accounts} over both epochs
--
-- HyperLogLogs keep this at a few kilobytes per template whatever the campaign's size.
local epoch_s = tonumber(ARGV[1])
local api_keys, networks, accounts = {}, {}, {}
for i = 2, #ARGV, 3 do
  api_keys[#api_keys + 1] = ARGV[i]
  networks[#networks + 1] = ARGV[i + 1]
  if ARGV[i + 2] ~= '' then accounts[#accounts + 1] = ARGV[i + 2] end
end
local ttl = epoch_s * 2 + 60
-- unpack() has a stack limit: add in slices.
local function pfadd(key, members)
  for first = 1, #members, 1000 do
    redis.call('PFADD', key, unpack(members, first, math.min(first + 999, #members)))
  end
  if #members > 0 then redis.call('EXPIRE', key, ttl) end
end
pfadd(KEYS[1], api_keys)
pfadd(KEYS[3], networks)
pfadd(KEYS[5], accounts)
return {
  redis.call('PFCOUNT', KEYS[1], KEYS[2]),
  redis.call('PFCOUNT', KEYS[3], KEYS[4]),
  redis.call('PFCOUNT', KEYS[5], KEYS[6]),
}
