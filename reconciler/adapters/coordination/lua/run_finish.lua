-- A reconciliation's last round trip: note what Halo said (note_reconciled.lua), whether a breaker is
-- open to close (its closing reads, deletes and re-queues: breaker.py, only when one is), release
-- the claim (queue_done.lua) and tell the reports waiting on the run that it finished (a PUBLISH of
-- the message runs.py writes up to its last value, again, which only the release knows).
-- Returns {queue_done's answer, 1 if a breaker is open else 0}.
-- KEYS: 1 dirty, 2 processing, then B breaker hashes, then note_reconciled's 5 keys (or none)
-- ARGV: 1 B, 2 N note_reconciled's argument count (0: no note), then queue_done's 5, then note_reconciled's
-- N, then (or nothing: no message) the channel and the message up to '"again":'
--#include note_reconciled
--#include queue_done
local b, n = tonumber(ARGV[1]), tonumber(ARGV[2])
if n > 0 then
  note_reconciled({unpack(KEYS, 3 + b, 7 + b)}, {unpack(ARGV, 8, 7 + n)})
end
local open = 0
if b > 0 and redis.call('EXISTS', unpack(KEYS, 3, 2 + b)) > 0 then open = 1 end
local again = queue_done({KEYS[1], KEYS[2]}, {unpack(ARGV, 3, 7)})
local head = ARGV[9 + n]
if head then
  redis.call('PUBLISH', ARGV[8 + n], head .. (again == 1 and 'true}' or 'false}'))
end
return {again, open}
