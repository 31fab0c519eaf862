-- The queued mark, halo:dirty:{id} (workqueue.py says what it promises), spelled once: its value is
-- 'GUID|ms|state|nonce', ms on the Redis server's clock, and its states are
--   p  pending:  a publish is on its way (lives a little longer than the publish may take)
--   q  queued:   the broker took the message (lives as long as the broker may take to deliver it)
--   r  reported: a report came while a run holds the practice (lives with the run's lock; no nonce)
-- Folded in by the scripts that write or read it (`local mark = queued_mark()` gives these helpers);
-- reconciler.adapters.coordination.workqueue.QueuedMark is its Python mirror, and
-- tests/integration/test_queued_mark.py holds the two equal.
local PENDING, QUEUED, REPORTED = 'p', 'q', 'r'
local mark = {PENDING = PENDING, QUEUED = QUEUED, REPORTED = REPORTED}

-- 'GUID|ms': what a report (or '*', a sweep's or a manual run's) asks, and when, by the server's clock.
function mark.stamp(guid)
  local t = redis.call('TIME')
  return guid .. '|' .. (t[1] * 1000 + math.floor(t[2] / 1000))
end

function mark.set_pending(key, stamp, nonce, seconds)
  redis.call('SET', key, stamp .. '|' .. PENDING .. '|' .. nonce, 'EX', seconds)
end

-- Reported while a run holds the practice: lives as long as the run's lock (lock_ms, the lock's PTTL),
-- and a pending mark's lifetime more, for the run's own follow-up to be published.
function mark.set_reported(key, stamp, lock_ms, pending_seconds)
  if lock_ms < 0 then lock_ms = 0 end
  redis.call('SET', key, stamp .. '|' .. REPORTED .. '|', 'PX', lock_ms + tonumber(pending_seconds) * 1000)
end

-- GUID, ms (0 if absent), state and nonce (nil if absent) of a mark; older marks were 'GUID|ms' or a
-- bare GUID.
function mark.parse(value)
  local guid, rest = value, nil
  local sep = string.find(value, '|', 1, true)
  if not sep then return guid, 0, nil, nil end
  guid, rest = string.sub(value, 1, sep - 1), string.sub(value, sep + 1)
  local sep2 = string.find(rest, '|', 1, true)
  if not sep2 then return guid, tonumber(rest) or 0, nil, nil end
  local at, tail = tonumber(string.sub(rest, 1, sep2 - 1)) or 0, string.sub(rest, sep2 + 1)
  local sep3 = string.find(tail, '|', 1, true)
  if not sep3 then return guid, at, tail, nil end
  return guid, at, string.sub(tail, 1, sep3 - 1), string.sub(tail, sep3 + 1)
end

-- The mark's value with its state turned to `to`, if it is `from` under this publish's nonce; else nil.
function mark.turned(value, from, to, nonce)
  local suffix = '|' .. from .. '|' .. nonce
  if string.sub(value, -#suffix) ~= suffix then return nil end
  return string.sub(value, 1, #value - #suffix) .. '|' .. to .. '|' .. nonce
end

-- True if the mark stands for this publish (pending or queued under its nonce).
function mark.is_publish(value, nonce)
  local tail = string.sub(value, -(#nonce + 3))
  return tail == '|' .. PENDING .. '|' .. nonce or tail == '|' .. QUEUED .. '|' .. nonce
end

return mark
