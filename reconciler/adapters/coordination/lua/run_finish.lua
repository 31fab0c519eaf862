-- A reconciliation's last round trip: note what Halo said (note_reconciled.lua), whether a breaker is
-- open to close (its closing reads, deletes and re-queues: breaker.py, only when one is), and release
-- the claim (queue_done.lua). Returns {queue_done's answer, 1 if a breaker is open else 0}.
-- KEYS: 1 dirty, 2 processing, then B breaker hashes, then note_reconciled's 5 keys (or none)
-- ARGV: 1 B, 2 N note_reconciled's argument count (0: no note), then queue_done's 5, then note_reconciled's
--#include note_reconciled
--#include queue_done
local b, n = tonumber(ARGV[1]), tonumber(ARGV[2])
if n > 0 then
  note_reconciled({unpack(KEYS, 3 + b, 7 + b)}, {unpack(ARGV, 8, 7 + n)})
end
local open = 0
if b > 0 and redis.call('EXISTS', unpack(KEYS, 3, 2 + b)) > 0 then open = 1 end
return {queue_done({KEYS[1], KEYS[2]}, {unpack(ARGV, 3, 7)}), open}
