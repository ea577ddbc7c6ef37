-- add.lua: one request of the exactly-once protocol (backends/redis/engine.c).
-- Embedded at build time (cmake/embed.cmake); lines that begin with "--"
-- are left out of what the server gets, so these comments cost it nothing.
--
-- KEYS[1] counter, KEYS[2] this client's record; ARGV[1] sequence number,
-- ARGV[2] delta (the sum of the adds the request carries), ARGV[3] record
-- TTL in ms, ARGV[4] the sum of the client's requests up to this one
-- (modulo 2^64, as the client counts it).  The record is "SEQ VALUE SUM".
-- Answers {0, value} when it applied the delta (value: the counter just
-- after), {2, value} when it did so finding no record though SEQ is past 1
-- (the record expired, or the server lost it), {1, value} for a request
-- applied before (value: as recorded, the counter after the client's last
-- applied request), "TALLYGAP last sum" when an earlier request of this
-- client was not applied (nothing done; last and sum: the record's, so
-- that a client whose acknowledged requests the server lost knows how
-- many and how much), "TALLYTYPE type" when the key is not an integer
-- counter (type: what TYPE says it holds; nothing done), or INCRBY's
-- other errors.
--
-- Strict sequence: a request applies only when its number follows the
-- record's by one, so requests in flight on one connection apply in order
-- or not at all, and a copy that arrives late (a resend's first attempt,
-- held up in the network) finds its number taken.  No record (a client's
-- first request, or one idle past the TTL): it applies.  Three server calls
-- on the common path: GET the record, INCRBY, SET the record.
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
    if string.find(r.err, 'WRONGTYPE', 1, true) or
       string.find(r.err, 'not an integer', 1, true) then
      return nil, redis.error_reply('TALLYTYPE ' ..
                                    redis.call('TYPE', KEYS[1]).ok)
    end
    return nil, r
  end
  if r > -9007199254740992 and r < 9007199254740992 then
    return string.format('%d', r)
  end
  return redis.call('GET', KEYS[1])
end
local rec = redis.call('GET', KEYS[2])
local seq = tonumber(ARGV[1])
if rec then
  local sp = string.find(rec, ' ', 1, true)
  local last = string.sub(rec, 1, sp - 1)
  local value, cum = string.sub(rec, sp + 1), '?'
  local sp2 = string.find(value, ' ', 1, true)
  if sp2 then
    cum = string.sub(value, sp2 + 1)
    value = string.sub(value, 1, sp2 - 1)
  end
  if seq <= tonumber(last) then
    -- A write (the record's TTL renewed), so that a WAIT after this
    -- answer waits for the replicas to hold everything up to it.
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    return {1, value}
  end
  if seq > tonumber(last) + 1 then
    return redis.error_reply('TALLYGAP ' .. last .. ' ' .. cum)
  end
end
local v, err = add(ARGV[2])
if not v then return err end
redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. v .. ' ' .. ARGV[4], 'PX', ARGV[3])
if not rec and seq > 1 then return {2, v} end
return {0, v}
