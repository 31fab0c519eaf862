-- A publish failed: drop its mark, pending or confirmed, if it is still this publisher's (nonce).
-- KEYS: 1 dirty. ARGV: 1 nonce. 1: dropped; 0: not ours (or gone)
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local n = #ARGV[1] + 3
local tail = string.sub(value, -n)
if tail ~= '|p|' .. ARGV[1] and tail ~= '|q|' .. ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
