-- Release a claim. 1: exactly one more run must follow (a report after the answer still names the
-- GUID in use); 0: done. KEYS: 1 dirty, 2 processing. ARGV: 1 token, 2 current GUID, 3 answered ms
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
local dirty = redis.call('GET', KEYS[1])
if not dirty then return 0 end
local sep = string.find(dirty, '|', 1, true)
local guid = dirty
local at = 0
if sep then
  guid = string.sub(dirty, 1, sep - 1)
  at = tonumber(string.sub(dirty, sep + 1)) or 0
end
if (guid == ARGV[2] or guid == '*') and at > tonumber(ARGV[3]) then return 1 end
redis.call('DEL', KEYS[1])
return 0
