-- The server's clock in milliseconds: every report is stamped with it (hosts' clocks may differ).
local t = redis.call('TIME')
return t[1] * 1000 + math.floor(t[2] / 1000)
