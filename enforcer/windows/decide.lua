-- Decide whether a verdict for one subject must be published, and remember what was published.
--
-- KEYS[1]  the subject's decision state hash for one mode (enforce or shadow)
-- ARGV     action, rank, expires_at ("" = never), ts, renew_before_s, rule, ttl_s
-- Returns  1 to publish, 0 when the gateway already holds an equal or stronger live action.
--
-- Publishing only on change or near expiry keeps the decisions topic small and lets a gateway
-- treat every record as news; the state lives in Redis so all workers agree on it.
local action, rank = ARGV[1], tonumber(ARGV[2])
local expires_at = tonumber(ARGV[3])
local ts, renew_before = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = redis.call('HMGET', KEYS[1], 'rank', 'expires_at')
local cur_rank = tonumber(cur[1])
local cur_exp = cur[2]
local live = cur_rank ~= nil and (cur_exp == '' or tonumber(cur_exp) > ts)
local publish = false
if not live then
  publish = true
elseif rank > cur_rank then
  publish = true
elseif rank == cur_rank and cur_exp ~= '' and expires_at ~= nil and tonumber(cur_exp) - ts < renew_before then
  publish = true
end
if not publish then return 0 end
redis.call('HSET', KEYS[1], 'action', action, 'rank', rank, 'expires_at', ARGV[3], 'ts', ARGV[4], 'rule', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'published', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
return 1
