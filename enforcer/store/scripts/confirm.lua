-- Mark publications as delivered: the producer has them on the decisions topic. A batch's
-- receipts go in one call (one per slot group on a Redis Cluster), as decide.lua's proposals do.
--
-- KEYS     per receipt: the subject's decision state hash for one mode (see decide.lua)
-- ARGV     per receipt, in the same order: the publication's sequence number, as decide.lua
--          returned it
-- Returns  how many of them were still the latest publication and are now delivered
--
-- Only the latest publication is confirmed: if another worker published for the subject
-- meanwhile, its own publication stays pending until its own delivery is confirmed.
local confirmed = 0
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], 'published') == ARGV[i] then
    redis.call('HSET', KEYS[i], 'pending', 0)
    confirmed = confirmed + 1
  end
end
return confirmed
