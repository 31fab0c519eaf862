-- Mark a practice queued (value GUID|ms|state|nonce, ms on the server's clock). 1: publish a task
-- now, then confirm with the nonce; 0: one is pending, or a run holds the practice and answers it.
-- States: p, a publish is on its way (lives a little longer than the publish may take); q, the
-- broker took the message (confirmed); r, reported while a run holds the practice (lives with its lock).
-- KEYS: 1 dirty, 2 processing. ARGV: 1 GUID or '*', 2 pending lifetime s, 3 nonce
local t = redis.call('TIME')
local stamp = ARGV[1] .. '|' .. (t[1] * 1000 + math.floor(t[2] / 1000))
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local lock = redis.call('PTTL', KEYS[2])
-- A sweep's (or a kept) run asks for any answer: the run holding the practice gives one. Marking it
-- would make that run's done() queue a second, a Find sites call for a practice just verified.
if lock ~= -2 and ARGV[1] == '*' then return 0 end
if lock ~= -2 then
  if lock < 0 then lock = 0 end
  redis.call('SET', KEYS[1], stamp .. '|r|', 'PX', lock + tonumber(ARGV[2]) * 1000)
  return 0
end
redis.call('SET', KEYS[1], stamp .. '|p|' .. ARGV[3], 'EX', ARGV[2])
return 1
