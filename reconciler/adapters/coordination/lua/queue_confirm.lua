-- The broker took the message a pending mark stood for: the mark turns queued (queued_mark.lua) and
-- lives as long as a queued message may wait for its delivery. 1: confirmed; 0: the mark is gone or
-- another's (a worker claimed it already, or it expired and a later report took over).
-- KEYS: 1 dirty. ARGV: 1 nonce, 2 queued lifetime s
--#include queued_mark
local mark = queued_mark()
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local queued = mark.turned(value, mark.PENDING, mark.QUEUED, ARGV[1])
if not queued then return 0 end
redis.call('SET', KEYS[1], queued, 'EX', ARGV[2])
return 1
