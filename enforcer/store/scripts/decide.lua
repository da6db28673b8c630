-- Decide whether a verdict for one subject must be published, and remember what was published.
--
-- KEYS[1]  the subject's decision state hash for one mode (enforce or shadow)
-- KEYS[2]  the rule's strike log for the subject in that mode: sorted set, score = event ts
-- ARGV     action, rank, expires_at ("" = never), ts, renew_before_s, rule, ttl_s,
--          strikes_within_s, n_steps, delivered_by (a token naming the caller's producer, which
--          confirms delivery with confirm.lua; "": a publication counts as delivered), then per
--          escalation step
--          (weakest first): after, action, rank, expires_at, ttl_s
-- Returns  {publish, step, strikes, sequence}: publish is 1 to publish, 0 when the gateway
--          already holds an equal or stronger live action; step is the escalation step used
--          (0 = the rule's own action); strikes is how many decisions this rule published for
--          the subject within strikes_within_s before this one; sequence numbers the subject's
--          publications, for confirm.lua.
--
-- Publishing only on change or near expiry keeps the decisions topic small and lets a gateway
-- treat every record as news; the state lives in Redis so all workers agree on it. Strikes are
-- read and written here, in the same call, so escalation costs no extra round trip and two
-- workers cannot both count the same strike as absent.
--
-- A publication is remembered before Kafka has it, so it stays pending (holding the token of
-- the producer delivering it) until confirm.lua says it was delivered. A pending publication
-- of the same rule from another token does not suppress the verdict: a worker that died before
-- delivery left it pending, and the redelivered batch publishes it again, with the step it had
-- and without striking twice. One pending under the caller's own token is on its way: the
-- worker judges its next batch while delivering this one, and must not publish it twice.
--
-- A lifted subject (lift.lua) publishes nothing for evidence from before its lift.
local ts, renew_before = tonumber(ARGV[4]), tonumber(ARGV[5])
local rule = ARGV[6]
local within, n_steps = tonumber(ARGV[8]), tonumber(ARGV[9])
local delivered_by = ARGV[10]
local first_step = 10

local cur = redis.call('HMGET', KEYS[1], 'rank', 'expires_at', 'rule', 'step', 'pending', 'lifted_at')
if cur[6] and ts <= tonumber(cur[6]) then return {0, 0, 0, 0} end
local cur_rank = tonumber(cur[1])
local cur_exp = cur[2]
local pending = cur[5]
local undelivered = pending and pending ~= '0' and pending ~= '' and pending ~= delivered_by
  and cur[3] == rule

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (ts - within))
local strikes = redis.call('ZCARD', KEYS[2])
-- The undelivered publication's own strike is already logged; it was not counted for it.
if undelivered and strikes > 0 then strikes = strikes - 1 end

local step, action, rank, expires_arg, ttl = 0, ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[7])
for i = 1, n_steps do
  local base = first_step + (i - 1) * 5
  if strikes >= tonumber(ARGV[base + 1]) then
    step, action, rank = i, ARGV[base + 2], tonumber(ARGV[base + 3])
    expires_arg, ttl = ARGV[base + 4], tonumber(ARGV[base + 5])
  end
end
local expires_at = tonumber(expires_arg)

local live = cur_rank ~= nil and (cur_exp == '' or tonumber(cur_exp) > ts)
local publish = false
if not live or undelivered then
  publish = true
elseif rank > cur_rank then
  publish = true
elseif rank == cur_rank and cur[3] == rule and step > (tonumber(cur[4]) or 0) then
  -- A higher step of the same rule with an equal action (a tighter throttle, a longer block).
  publish = true
elseif rank == cur_rank and cur_exp ~= '' and expires_at ~= nil and tonumber(cur_exp) - ts < renew_before then
  publish = true
end
if not publish then return {0, step, strikes, 0} end
redis.call('HSET', KEYS[1], 'action', action, 'rank', rank, 'expires_at', expires_arg, 'ts', ARGV[4],
  'rule', rule, 'step', step, 'pending', delivered_by ~= '' and delivered_by or '0')
local sequence = redis.call('HINCRBY', KEYS[1], 'published', 1)
redis.call('EXPIRE', KEYS[1], ttl)
if not undelivered then
  redis.call('ZADD', KEYS[2], ts, ARGV[4] .. '#' .. sequence)
  redis.call('EXPIRE', KEYS[2], math.ceil(within) + 3600)
end
return {1, step, strikes, sequence}
