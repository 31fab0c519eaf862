-- The broker took the message a pending mark stood for: the mark now lives as long as a queued
-- message may wait for its delivery. 1: confirmed; 0: the mark is gone or another's (a worker
-- claimed it already, or it expired and a later report took over).
-- KEYS: 1 dirty. ARGV: 1 nonce, 2 queued lifetime s
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local suffix = '|p|' .. ARGV[1]
if string.sub(value, -#suffix) ~= suffix then return 0 end
redis.call('SET', KEYS[1], string.sub(value, 1, #value - #suffix) .. '|q|' .. ARGV[1], 'EX', ARGV[2])
return 1
