-- Mark a practice queued (GUID|ms on the server's clock). 1: publish a task now; 0: one is pending.
-- KEYS: 1 dirty, 2 processing. ARGV: 1 GUID or '*', 2 mark lifetime
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. now, 'EX', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return 1
