-- The run holding a claim renews it while it is alive (reconciler.usecases.claims), so the lock can be
-- short: a worker host that dies stops renewing and its practice is free within one lock lifetime.
-- A report marked while the run holds the practice ('r') lives with the lock, so it is renewed with it.
-- 1: renewed; 0: the claim is not this run's any more (expired, taken over).
-- KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 lock lifetime s, 3 pending lifetime s
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[2])
local mark = redis.call('GET', KEYS[1])
if mark and string.find(mark, '|r|', 1, true) then
  redis.call('PEXPIRE', KEYS[1], (tonumber(ARGV[2]) + tonumber(ARGV[3])) * 1000)
end
return 1
