-- After Halo answered for a practice (marks.note_verified says what each mark means): rewrite its
-- GUID index entries, count the confirmation and set the fresh mark for the re-check delay.
-- KEYS: 1 fresh, 2 confirmations, 3 since-verified, 4 persists-noted, 5 GUID index
-- ARGV: 1 confirmed ('1' confirmed, '0' answered, '' no answer), 2 restart ('1': a switch), 3 now ms
--       (the caller's clock), 4 confirmations lifetime s, 5 unknown-GUID prefix, 6 N index entries,
--       7 .. 6+2N GUID, entry pairs, then the re-check delay in ms after 1, 2, ... confirmations (the
--       last one holds for every later count; Python's recheck_delay computes them)
local n = tonumber(ARGV[6])
for i = 0, n - 1 do
  local guid = ARGV[7 + 2 * i]
  redis.call('HSET', KEYS[5], guid, ARGV[8 + 2 * i])
  redis.call('DEL', ARGV[5] .. guid)
end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
  return 0
end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4]) end
local count = redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('HSETNX', KEYS[2], 'since_ms', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
local first = 7 + 2 * n
local delay = ARGV[first + math.min(count, #ARGV - first + 1) - 1]
redis.call('SET', KEYS[1], ARGV[1] == '1' and 'confirmed' or 'answered', 'PX', delay)
return count
