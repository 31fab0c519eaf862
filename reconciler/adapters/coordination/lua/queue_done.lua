-- Release a claim. 1: exactly one more run must follow (a report after the answer still names the
-- GUID in use): the mark turns pending under ARGV[4] for the caller's publish, to confirm or forget;
-- 0: done. KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 current GUID, 3 answered ms, 4 follow-up
-- nonce, 5 pending lifetime s
--#include queued_mark
local mark = queued_mark()
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local dirty = redis.call('GET', KEYS[1])
if not dirty then return 0 end
local guid, at = mark.parse(dirty)
if (guid == ARGV[2] or guid == '*') and at > tonumber(ARGV[3]) then
  mark.set_pending(KEYS[1], guid .. '|' .. at, ARGV[4], ARGV[5])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
