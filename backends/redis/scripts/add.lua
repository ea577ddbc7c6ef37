-- add.lua: one request of the exactly-once protocol (backends/redis/once.c).
-- Embedded at build time (cmake/embed.cmake); lines that begin with "--"
-- are left out of what the server gets, so these comments cost it nothing.
--
-- KEYS[1] counter, KEYS[2] this client's record; ARGV[1] sequence number,
-- ARGV[2] delta, ARGV[3] record TTL in ms, ARGV[4] minus the delta (modulo
-- 2^64).  Answers {0, value} when it applied the delta, {1, value} for a
-- request already applied (value: as recorded), or INCRBY's error (wrong
-- type, not an integer).
--
-- Two server calls on the common path: INCRBY, then SET ... GET writes the
-- new record and reads the old one.  Every attempt checks (a first attempt
-- delayed in the network may arrive after its resend); when the old record
-- says this request already ran, the delta is taken back and the record
-- restored, all in the same atomic step.  A server older than 6.2 refuses
-- SET ... GET: then GET and SET.
--
-- INCRBY refuses to overflow, where every tally backend wraps modulo 2^64:
-- that path adds in 32-bit halves (Lua 5.1 numbers are doubles, exact below
-- 2^53).
local function wrap(d)
  local B = 4294967296
  local function neg(h, l)
    l = B - l
    if l == B then return (B - h) % B, 0 end
    return B - 1 - h, l
  end
  local function parse(s)
    local h, l, i = 0, 0, 1
    if string.sub(s, 1, 1) == '-' then i = 2 end
    for j = i, #s do
      l = l * 10 + string.byte(s, j) - 48
      h = (h * 10 + math.floor(l / B)) % B
      l = l % B
    end
    if i == 2 then return neg(h, l) end
    return h, l
  end
  local ah, al = parse(redis.call('GET', KEYS[1]))
  local bh, bl = parse(d)
  local l = al + bl
  local h = (ah + bh + math.floor(l / B)) % B
  l = l % B
  local sign = ''
  if h >= B / 2 then sign = '-'; h, l = neg(h, l) end
  local out = ''
  repeat
    local x = (h % 10) * B + l
    h = math.floor(h / 10)
    local d = x % 10
    l = (x - d) / 10
    out = string.char(48 + d) .. out
  until h == 0 and l == 0
  redis.call('SET', KEYS[1], sign .. out)
  return sign .. out
end
local function add(d)
  local r = redis.pcall('INCRBY', KEYS[1], d)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow', 1, true) then return wrap(d) end
    return nil, r
  end
  if r > -9007199254740992 and r < 9007199254740992 then
    return string.format('%d', r)
  end
  return redis.call('GET', KEYS[1])
end
local v, err = add(ARGV[2])
if not v then return err end
local rec = ARGV[1] .. ' ' .. v
local old = redis.pcall('SET', KEYS[2], rec, 'PX', ARGV[3], 'GET')
if type(old) == 'table' and old.err then
  old = redis.call('GET', KEYS[2])
  redis.call('SET', KEYS[2], rec, 'PX', ARGV[3])
end
if old then
  local sp = string.find(old, ' ', 1, true)
  if tonumber(string.sub(old, 1, sp - 1)) >= tonumber(ARGV[1]) then
    add(ARGV[4])
    redis.call('SET', KEYS[2], old, 'PX', ARGV[3])
    return {1, string.sub(old, sp + 1)}
  end
end
return {0, v}
