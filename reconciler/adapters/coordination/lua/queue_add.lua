-- Mark a practice queued (the states: queued_mark.lua). 1: publish a task now, then confirm with the
-- nonce; 0: one is pending, or a run holds the practice and answers it.
-- KEYS: 1 dirty, 2 processing. ARGV: 1 GUID or '*', 2 pending lifetime s, 3 nonce
--#include queued_mark
local mark = queued_mark()
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local lock = redis.call('PTTL', KEYS[2])
-- A sweep's (or a kept) run asks for any answer: the run holding the practice gives one. Marking it
-- would make that run's done() queue a second, a Find sites call for a practice just verified.
if lock ~= -2 and ARGV[1] == '*' then return 0 end
if lock ~= -2 then
  mark.set_reported(KEYS[1], mark.stamp(ARGV[1]), lock, ARGV[2])
  return 0
end
mark.set_pending(KEYS[1], mark.stamp(ARGV[1]), ARGV[3], ARGV[2])
return 1
