-- One 403 report, in one round trip: find the practice by GUID, count the report in the ledger, and
-- fold it into the practice's pending reconciliation. Returns one string, 'outcome|practice_id|re-check
-- delay ms' (one bulk reply: cheaper for the client to read than an array of three, and the folded
-- report is the hot path); the outcomes are reconciler.core.vocabulary.ReportOutcome.
-- KEYS: 1 GUID index, 2 this minute's ledger bucket, 3 unknown-GUID mark, 4 lookup mark, 5 outcomes hash
-- ARGV: 1 GUID, 2 ledger bucket lifetime, 3 dirty prefix, 4 processing prefix, 5 pending-mark lifetime,
--       6 fresh prefix, 7 persistence threshold, 8 since-verified prefix, 9 lookup fold seconds,
--       10 persists-noted prefix, 11 persistence window seconds, 12 the publish's nonce,
--       13 re-check prefix, 14 re-check slack ms
--#include queued_mark
local function out(outcome, pid, delay)
  redis.call('HINCRBY', KEYS[5], outcome, 1)
  return outcome .. '|' .. pid .. '|' .. (delay or 0)
end
local guid = ARGV[1]
local entry = redis.call('HGET', KEYS[1], guid)
if not entry then
  if redis.call('EXISTS', KEYS[3]) == 1 then return out('unknown', '') end
  if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[9]) then return out('lookup', '') end
  return out('folded', '')
end
local sep = string.find(entry, ':', 1, true)
local pid = string.sub(entry, 1, sep - 1)
if string.sub(entry, sep + 1) ~= 'current' then return out('stale', pid) end
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local fresh = redis.call('GET', ARGV[6] .. pid)
-- A run holds the practice (an earlier answer left the mark): the run's own done() decides
-- (lua/queue_done.lua) whether this report needs one more run, by whether it names the GUID in use once
-- the run is over. A re-check queued here would ask Halo again about a GUID the run may be replacing.
if fresh == 'answered' and redis.call('EXISTS', ARGV[4] .. pid) == 1 then fresh = false end
if fresh then
  local n = redis.call('INCR', ARGV[8] .. pid)
  redis.call('EXPIRE', ARGV[8] .. pid, ARGV[2])
  -- No deaf window: Halo answered moments ago, so the first report from now on queues one re-check
  -- for when the fresh mark ends (marks.note_verified sets it to the re-check delay); the rest fold.
  local left = math.max(redis.call('PTTL', ARGV[6] .. pid), 0)
  if redis.call('SET', ARGV[13] .. pid, guid, 'NX', 'PX', left + tonumber(ARGV[14])) then
    return out('recheck', pid, left)
  end
  -- The rule is Python's (policy.decide): "threshold or more". The noted mark makes the crossing
  -- publish once per window, not once per report.
  if fresh == 'confirmed' and n >= tonumber(ARGV[7])
     and redis.call('SET', ARGV[10] .. pid, '1', 'NX', 'EX', ARGV[11]) then
    return out('persists', pid)
  end
  return out('counted', pid)
end
if redis.call('EXISTS', ARGV[13] .. pid) == 1 then return out('folded', pid) end
-- The queued mark (queued_mark.lua says its states): a pending one lives only a little longer than
-- the publish may take, so a publisher that died before publishing swallows no later report.
local dirty = ARGV[3] .. pid
if redis.call('EXISTS', dirty) == 1 then return out('folded', pid) end
local mark = queued_mark()
local lock = redis.call('PTTL', ARGV[4] .. pid)
if lock ~= -2 then
  mark.set_reported(dirty, mark.stamp(guid), lock, ARGV[5])
  return out('folded', pid)
end
mark.set_pending(dirty, mark.stamp(guid), ARGV[12], ARGV[5])
return out('publish', pid)
