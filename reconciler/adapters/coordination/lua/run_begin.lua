-- A reconciliation's first round trip: the claim (queue_start.lua), and what the run reads before it
-- asks Halo: the breakers' state and when the practice's consecutive confirmations began.
-- Returns {claim (queue_start's answer), since_ms or false, breaker 1 fields, breaker 2 fields, ...}.
-- KEYS: 1 dirty, 2 processing, 3 confirmations, 4.. breaker hashes. ARGV: queue_start's
--#include queue_start
local found = {queue_start({KEYS[1], KEYS[2]}, ARGV), redis.call('HGET', KEYS[3], 'since_ms')}
for i = 4, #KEYS do found[#found + 1] = redis.call('HGETALL', KEYS[i]) end
return found
