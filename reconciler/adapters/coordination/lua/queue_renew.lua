-- The run holding a claim renews it while it is alive (reconciler.usecases.claims), so the lock can be
-- short: a worker host that dies stops renewing and its practice is free within one lock lifetime.
-- A report marked while the run holds the practice (reported) lives with the lock, so it is renewed with it.
-- 1: renewed; 0: the claim is not this run's any more (expired, taken over).
-- KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 lock lifetime s, 3 pending lifetime s
--#include queued_mark
local mark = queued_mark()
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[2])
local value = redis.call('GET', KEYS[1])
if value then
  local _, _, state = mark.parse(value)
  if state == mark.REPORTED then
    redis.call('PEXPIRE', KEYS[1], (tonumber(ARGV[2]) + tonumber(ARGV[3])) * 1000)
  end
end
return 1
