-- Mark a subject's publication as delivered: the producer has it on the decisions topic.
--
-- KEYS[1]  the subject's decision state hash for one mode (see decide.lua)
-- ARGV[1]  the publication's sequence number, as decide.lua returned it
-- Returns  1 when that publication is still the latest and is now delivered, else 0
--
-- Only the latest publication is confirmed: if another worker published for the subject
-- meanwhile, its own publication stays pending until its own delivery is confirmed.
if redis.call('HGET', KEYS[1], 'published') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'pending', 0)
return 1
