-- Helpers shared by the scripts that include this file (scripts.py pastes it in).

-- The first n NUL-separated fields of an event row (the last one keeps the rest).
local function fields(blob, n)
  local out, pos = {}, 1
  for i = 1, n do
    local z = string.find(blob, '\0', pos, true)
    if not z then out[i] = string.sub(blob, pos); return out end
    out[i] = string.sub(blob, pos, z - 1)
    pos = z + 1
  end
  return out
end

-- fields(blob, 5) of an event row in one pattern match (the write script's per-row read);
-- a text with fewer fields goes the long way.
local function fields5(blob)
  local a, b, c, d, e = string.match(blob, '^(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)')
  if not a then return fields(blob, 5) end
  return {a, b, c, d, e}
end

-- Numbers per block of the zone map (key z: block -> latest timestamp in it).
local ZONE = 1024

-- Sequence numbers in index members are fixed-width, so lex order is numeric order.
local function pad(n) return string.format('%012d', n) end
local function fmt(n) return string.format('%.0f', n) end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Put (doc ~= nil) or remove (doc == nil) one session in the list_sessions indexes.
-- ix: the KEYS positions of all, st, ag, sa (lex sorted sets), meta and docs (hashes).
-- Returns false when a newer version is already indexed (a late, stale update).
local function index_put(ix, sid, v, doc, members, keep_tombstone)
  local all, st, ag, sa = KEYS[ix[1]], KEYS[ix[2]], KEYS[ix[3]], KEYS[ix[4]]
  local meta, docs = KEYS[ix[5]], KEYS[ix[6]]
  local old = redis.call('HGET', meta, sid)
  if old then
    old = cjson.decode(old)
    if tonumber(old[1]) >= v then return false end
    if old[2] then
      redis.call('ZREM', all, old[2]); redis.call('ZREM', st, old[3])
      redis.call('ZREM', ag, old[4]); redis.call('ZREM', sa, old[5])
    end
  end
  if doc then
    redis.call('ZADD', all, 0, members[1]); redis.call('ZADD', st, 0, members[2])
    redis.call('ZADD', ag, 0, members[3]); redis.call('ZADD', sa, 0, members[4])
    redis.call('HSET', meta, sid,
      cjson.encode({fmt(v), members[1], members[2], members[3], members[4]}))
    redis.call('HSET', docs, sid, doc)
  else
    if keep_tombstone then redis.call('HSET', meta, sid, cjson.encode({fmt(v)}))
    else redis.call('HDEL', meta, sid) end
    redis.call('HDEL', docs, sid)
  end
  return true
end

-- Exact order of two decimal integer strings (-1, 0, 1): timestamps in µs exceed 2^53 at the
-- ends of the contract's range, where Lua's doubles would round them.
local function int_cmp(a, b)
  if a == b then return 0 end
  local na, nb = string.byte(a, 1) == 45, string.byte(b, 1) == 45  -- '-'
  if na ~= nb then return na and -1 or 1 end
  if na then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b and -1 or 1 end
  return a < b and -1 or 1
end

-- Single node: an event id index value, `<session>\0<seq>` (or `<session>` alone, written
-- before issue 13, whose number is in that session's ids hash). Returns session, seq or nil.
local function pointer(v)
  local z = string.find(v, '\0', 1, true)
  if not z then return v, nil end
  return string.sub(v, 1, z - 1), string.sub(v, z + 1)
end

-- Does the row stored at seq in the ev hash ev belong to event id?
local function row_is(ev, seq, id)
  local row = redis.call('HGET', ev, seq)
  return row and string.sub(row, 1, #id + 1) == id .. '\0', row
end

-- The type index (key t, a hash; issue 13): per type, the numbers of its events in order, as
-- fixed-width 5-byte big-endian numbers (10^12 - 1 < 2^40) packed TCHUNK to a field
-- `<type>\0<k>` (entry i is in chunk i // TCHUNK), and a field `<type>` = `<start> <count>`:
-- entries start..count-1 are live (prune drops a type's oldest by moving start). Types hold
-- no NUL, so the fields cannot collide. About 6 B per event, where a member of x cost ~128.
-- x holds `T<type>` per type present (the directory prune walks). A session written before
-- this change has `t<type>\0<seq:012>` members in x instead and keeps that form (old_types).
local TCHUNK, TW = 128, 5

local function pack5(n)
  local out = {}
  for i = 5, 1, -1 do out[i] = n % 256; n = (n - out[i]) / 256 end
  return string.char(out[1], out[2], out[3], out[4], out[5])
end

local function unpack5(s, pos)
  local a, b, c, d, e = string.byte(s, pos, pos + 4)
  return (((a * 256 + b) * 256 + c) * 256 + d) * 256 + e
end

-- start, count of a type's array (0, 0, false: none)
local function type_header(key, typ)
  local h = redis.call('HGET', key, typ)
  if not h then return 0, 0, false end
  local s, c = string.match(h, '^(%d+) (%d+)$')
  return tonumber(s), tonumber(c), true
end

-- Entry i (absolute index) of a type's array, and chunk k's text; the chunk last read is kept.
local function type_entries(key, typ)
  local at, chunk = nil, nil
  local function of(k)
    if k ~= at then
      chunk = redis.call('HGET', key, typ .. '\0' .. fmt(k)) or ''
      at = k
    end
    return chunk
  end
  return function(i)
    return unpack5(of(math.floor(i / TCHUNK)), (i % TCHUNK) * TW + 1)
  end, of
end

-- The first index in lo..hi whose entry is > n (hi + 1 when none); entries ascend.
local function first_above(get, lo, hi, n)
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    if get(mid) > n then hi = mid - 1 else lo = mid + 1 end
  end
  return lo
end

-- Does the session keep its type index in x (written before issue 13's type index)?
local function old_types(x)
  return #redis.call('ZRANGEBYLEX', x, '[t', '(u', 'LIMIT', 0, 1) > 0
end
