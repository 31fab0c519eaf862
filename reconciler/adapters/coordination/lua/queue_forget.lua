-- A publish failed: drop its mark, pending or queued (queued_mark.lua), if it is still this
-- publisher's (nonce). KEYS: 1 dirty. ARGV: 1 nonce. 1: dropped; 0: not ours (or gone)
--#include queued_mark
local mark = queued_mark()
local value = redis.call('GET', KEYS[1])
if not value or not mark.is_publish(value, ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
return 1
