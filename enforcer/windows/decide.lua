-- Decide whether a verdict for one subject must be published, and remember what was published.
--
-- KEYS[1]  the subject's decision state hash for one mode (enforce or shadow)
-- KEYS[2]  the rule's strike log for the subject in that mode: sorted set, score = event ts
-- ARGV     action, rank, expires_at ("" = never), ts, renew_before_s, rule, ttl_s,
--          strikes_within_s, n_steps, then per escalation step (weakest first):
--          after, action, rank, expires_at, ttl_s
-- Returns  {publish, step, strikes}: publish is 1 to publish, 0 when the gateway already holds
--          an equal or stronger live action; step is the escalation step used (0 = the rule's
--          own action); strikes is how many decisions this rule published for the subject
--          within strikes_within_s before this one.
--
-- Publishing only on change or near expiry keeps the decisions topic small and lets a gateway
-- treat every record as news; the state lives in Redis so all workers agree on it. Strikes are
-- read and written here, in the same call, so escalation costs no extra round trip and two
-- workers cannot both count the same strike as absent.
local ts, renew_before = tonumber(ARGV[4]), tonumber(ARGV[5])
local rule = ARGV[6]
local within, n_steps = tonumber(ARGV[8]), tonumber(ARGV[9])

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (ts - within))
local strikes = redis.call('ZCARD', KEYS[2])

local step, action, rank, expires_arg, ttl = 0, ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[7])
for i = 1, n_steps do
  local base = 9 + (i - 1) * 5
  if strikes >= tonumber(ARGV[base + 1]) then
    step, action, rank = i, ARGV[base + 2], tonumber(ARGV[base + 3])
    expires_arg, ttl = ARGV[base + 4], tonumber(ARGV[base + 5])
  end
end
local expires_at = tonumber(expires_arg)

local cur = redis.call('HMGET', KEYS[1], 'rank', 'expires_at', 'rule', 'step')
local cur_rank = tonumber(cur[1])
local cur_exp = cur[2]
local live = cur_rank ~= nil and (cur_exp == '' or tonumber(cur_exp) > ts)
local publish = false
if not live then
  publish = true
elseif rank > cur_rank then
  publish = true
elseif rank == cur_rank and cur[3] == rule and step > (tonumber(cur[4]) or 0) then
  -- A higher step of the same rule with an equal action (a tighter throttle, a longer block).
  publish = true
elseif rank == cur_rank and cur_exp ~= '' and expires_at ~= nil and tonumber(cur_exp) - ts < renew_before then
  publish = true
end
if not publish then return {0, step, strikes} end
redis.call('HSET', KEYS[1], 'action', action, 'rank', rank, 'expires_at', expires_arg, 'ts', ARGV[4],
  'rule', rule, 'step', step)
local published = redis.call('HINCRBY', KEYS[1], 'published', 1)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ts, ARGV[4] .. '#' .. published)
redis.call('EXPIRE', KEYS[2], math.ceil(within) + 3600)
return {1, step, strikes}
