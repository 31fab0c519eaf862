-- Halo has answered the run: the queued re-check is answered by it (marks.note_answered), the
-- answer's instant on the server's clock (now_ms.lua), and the 403s counted since the GUID was
-- confirmed (the ledger's buckets, which ledger.py chooses). Returns {now ms, 403 count}.
-- KEYS: 1 re-check mark, 2.. ledger buckets. ARGV: 1 '1' to clear the re-check mark
--#include now_ms
if ARGV[1] == '1' then redis.call('DEL', KEYS[1]) end
local now = now_ms({}, {})
local total = 0
if #KEYS > 1 then
  for _, value in ipairs(redis.call('MGET', unpack(KEYS, 2))) do
    if value then total = total + tonumber(value) end
  end
end
return {now, total}
