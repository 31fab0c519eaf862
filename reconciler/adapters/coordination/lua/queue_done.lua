-- Release a claim. 1: exactly one more run must follow (a report after the answer still names the
-- GUID in use): the mark turns pending under ARGV[4] for the caller's publish, to confirm or forget;
-- 0: done. KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 current GUID, 3 answered ms, 4 follow-up
-- nonce, 5 pending lifetime s
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local dirty = redis.call('GET', KEYS[1])
if not dirty then return 0 end
-- GUID|ms|state|nonce (older marks: GUID|ms, or a bare GUID)
local guid, at = dirty, 0
local sep = string.find(dirty, '|', 1, true)
if sep then
  guid = string.sub(dirty, 1, sep - 1)
  local rest = string.sub(dirty, sep + 1)
  local sep2 = string.find(rest, '|', 1, true)
  at = tonumber(sep2 and string.sub(rest, 1, sep2 - 1) or rest) or 0
end
if (guid == ARGV[2] or guid == '*') and at > tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], guid .. '|' .. at .. '|p|' .. ARGV[4], 'EX', ARGV[5])
  return 1
end
redis.call('DEL', KEYS[1])
return 0
