-- Claim a practice. 1: claimed; 2: taken over from the same token (a redelivery); -ms: wait that long.
-- KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 lock lifetime
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 2
end
return -redis.call('PTTL', KEYS[2])
