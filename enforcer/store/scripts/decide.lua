-- Decide whether verdicts must be published, and remember what was published: the proposals of
-- one batch (of one slot group on a Redis Cluster), in order, as if each had a call of its own.
-- One call rather than one per proposal: a live batch of 50 events carried about 17 proposals
-- (subjects already blocked trip their rules again), each a call with its own reply to read.
--
-- KEYS     per proposal: the subject's decision state hash for one mode (enforce or shadow),
--          then the rule's strike log for the subject in that mode (sorted set, score = event ts)
-- ARGV     per proposal, back to back: action, rank, expires_at ("" = never), ts,
--          renew_before_s, rule, ttl_s, strikes_within_s, n_steps, delivered_by (a token naming
--          the caller's producer, which confirms delivery with confirm.lua; "": a publication
--          counts as delivered), then per escalation step (weakest first): after, action, rank,
--          expires_at, ttl_s
-- Returns  per proposal, four integers back to back: publish, step, strikes, sequence.
--          publish is 1 to publish, 0 when the gateway
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
local A = ARGV

-- One proposal: its state hash, its strike log, and where its arguments start in ARGV (minus 1).
local function decide(state, strike_log, at)
  local ts, renew_before = tonumber(A[at + 4]), tonumber(A[at + 5])
  local rule = A[at + 6]
  local within, n_steps = tonumber(A[at + 8]), tonumber(A[at + 9])
  local delivered_by = A[at + 10]
  local first_step = 10

  local cur = redis.call('HMGET', state, 'rank', 'expires_at', 'rule', 'step', 'pending', 'lifted_at')
  if cur[6] and ts <= tonumber(cur[6]) then return 0, 0, 0, 0 end
  local cur_rank = tonumber(cur[1])
  local cur_exp = cur[2]
  local pending = cur[5]
  local undelivered = pending and pending ~= '0' and pending ~= '' and pending ~= delivered_by
    and cur[3] == rule

  redis.call('ZREMRANGEBYSCORE', strike_log, '-inf', '(' .. (ts - within))
  local strikes = redis.call('ZCARD', strike_log)
  -- The undelivered publication's own strike is already logged; it was not counted for it.
  if undelivered and strikes > 0 then strikes = strikes - 1 end

  local step, action, rank, expires_arg, ttl = 0, A[at + 1], tonumber(A[at + 2]), A[at + 3], tonumber(A[at + 7])
  for i = 1, n_steps do
    local base = first_step + (i - 1) * 5
    if strikes >= tonumber(A[at + base + 1]) then
      step, action, rank = i, A[at + base + 2], tonumber(A[at + base + 3])
      expires_arg, ttl = A[at + base + 4], tonumber(A[at + base + 5])
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
  if not publish then return 0, step, strikes, 0 end
  redis.call('HSET', state, 'action', action, 'rank', rank, 'expires_at', expires_arg, 'ts', A[at + 4],
    'rule', rule, 'step', step, 'pending', delivered_by ~= '' and delivered_by or '0')
  local sequence = redis.call('HINCRBY', state, 'published', 1)
  redis.call('EXPIRE', state, ttl)
  if not undelivered then
    redis.call('ZADD', strike_log, ts, A[at + 4] .. '#' .. sequence)
    redis.call('EXPIRE', strike_log, math.ceil(within) + 3600)
  end
  return 1, step, strikes, sequence
end

local out = {}
local at, k = 0, 1
while at < #A do
  local publish, step, strikes, sequence = decide(KEYS[k], KEYS[k + 1], at)
  out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = publish, step, strikes, sequence
  at = at + 10 + 5 * tonumber(A[at + 9])
  k = k + 2
end
return out
