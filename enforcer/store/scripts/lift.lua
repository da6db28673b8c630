-- Lift a subject: forget the evidence behind its decisions and mark its state lifted.
--
-- KEYS[1]  the subject's enforce decision state hash (see decide.lua)
-- KEYS[2]  the subject's shadow decision state hash
-- KEYS[3..] the subject's evidence: its windows, template counts and strike logs
-- ARGV     lifted_at (event-time seconds), grace_until ("" = no end), ttl_s
-- Returns  how many evidence keys existed and were removed
--
-- The lift leaves the enforce state holding an `allow` until the grace ends, with the time of
-- the lift: decide.lua then publishes a new verdict only for evidence gathered after it, and
-- since the counts start from nothing, only new behaviour can cross a rule again. Strikes go
-- too, so a subject that earns a decision again starts at the bottom of its rule's ladder.
local removed = 0
for i = 3, #KEYS do
  removed = removed + redis.call('DEL', KEYS[i])
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'action', 'allow', 'rank', 0, 'expires_at', ARGV[2], 'ts', ARGV[1],
  'rule', 'lift', 'step', 0, 'pending', 0, 'lifted_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return removed
