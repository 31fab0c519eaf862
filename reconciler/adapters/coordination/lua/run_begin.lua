-- A reconciliation's first round trip: the claim (queue_start.lua), and what the run reads before it
-- asks Halo: the breakers' state and when the practice's consecutive confirmations began; with the
-- claim granted, the rate limiter's token for its first Halo call (gcra.lua), when a bucket is given.
-- Returns {claim (queue_start's answer), since_ms or false, gcra's answer or false, breaker 1 fields, ...}.
-- KEYS: 1 dirty, 2 processing, 3 confirmations, 4 rate bucket, 5.. breaker hashes.
-- ARGV: queue_start's 2, then gcra's 2 (none: no token is taken)
--#include queue_start
--#include gcra
local claim = queue_start({KEYS[1], KEYS[2]}, {ARGV[1], ARGV[2]})
local wait = false
if ARGV[3] and claim > 0 then wait = gcra({KEYS[4]}, {ARGV[3], ARGV[4]}) end
local found = {claim, redis.call('HGET', KEYS[3], 'since_ms'), wait}
for i = 5, #KEYS do found[#found + 1] = redis.call('HGETALL', KEYS[i]) end
return found
