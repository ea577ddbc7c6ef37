-- init.lua: creating the counter (backends/redis/once.c).  Embedded at build
-- time (cmake/embed.cmake) without these comment lines.
--
-- KEYS[1] counter; ARGV[1] initial value, ARGV[2] "set", "keep" or "reset".
-- Answers {1, value} when the counter is ready (set, or joined as it was), or
-- {0, type} when the key holds something else ("string": not an integer)
-- and was left alone.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and ARGV[2] ~= 'reset' then
  if t ~= 'string' then return {0, t} end
  local v = redis.call('GET', KEYS[1])
  if not string.match(v, '^-?%d+$') then return {0, t} end
  local r = redis.pcall('INCRBY', KEYS[1], 0)
  if type(r) == 'table' and r.err then return {0, t} end
  if ARGV[2] == 'keep' then return {1, v} end
end
redis.call('SET', KEYS[1], ARGV[1])
return {1, ARGV[1]}
