#!lua
-- The one write script: appends, flushes, imports, session and run saves (plan.py builds
-- the call). ARGV[1] is the plan (JSON, fields below); event rows and documents travel as
-- plain ARGV strings at the positions the plan names. Every check runs before the first
-- write, so a refused call has changed nothing and consumed no sequence number.
--
-- plan.sessions         [{id, keys, channel}]: keys = KEYS position of the session's 10 keys
--                       (seq, ev, ids, x, s, runs, del, q, z, t) in a cluster; on a single
--                       node (no channel) of its seq key alone, the others named from its tag
--                       (`<tag>:seq` -> `<tag>:ev` ...: fewer arguments to pack and parse
--                       per call; nothing routes by them there)
-- plan.rows             {first, count}: ARGV positions of the event rows; each row is stored
--                       in the session its own session field names (plan.sessions has it);
--                       with packed (an ARGV position) and lens, the rows are instead that
--                       one string cut at those byte lengths (a large batch: plan.py)
-- plan.numbered         import: {seqs = the number of each row, latest = the export's latest}
-- plan.claimed          row numbers whose row is another writer's claim (cluster)
-- plan.fenced           honour delete fences (cluster)
-- plan.expected         {session, sequence, shortcut}: refuse unless that session's counter
--                       is sequence; with shortcut, a call whose rows are all stored passes
-- plan.touch            sessions getting new events get updated_at = now (C5)
-- plan.touch_sessions   session numbers whose updated_at is now, new events or not
-- plan.touched_index    KEYS position of the session id -> touched hash (single node)
-- plan.id_index         KEYS position of the global event id -> session hash (single node)
-- plan.session_record   {session, doc, members}: session number, ARGV positions
-- plan.list_index       KEYS positions of the 6 list_sessions index keys (single node)
-- plan.runs             [{session, id, doc}]: run documents to store
-- plan.runs_removed     [{session, id}]: runs to drop (a run moved to another session)
-- plan.run_index        KEYS position of the run id -> session hash (single node)
-- plan.run_owners       [{run, session}]: run index entries to set
-- plan.run_owner_checks [{run, owner}]: refuse ('RETRY') unless the run index still says so
-- plan.unchanged        {session, v, touched}: refuse ('RETRY') unless the session record's
--                       version and touched are still these (a retention mark)
-- plan.publish          'PUBLISH' or 'SPUBLISH': announce sessions that got new events; the
--                       message says what they got (wakes.py's wire form: f, l first and
--                       last number, t types, r runs + n none, ts newest timestamp)
--
-- Returns {'OK', out, session version}. Appends: out = {seq, stored} per row, stored '' for
-- a new row, else the row stored earlier under that id (in whichever named session holds
-- it). Imports: out = {imported, skipped}.
-- Refusals: {'BUSY'} (a delete fence), {'RETRY'} (a check failed: plan again),
-- {'OWNERS', session ids} (ids stored in sessions not named: name them and call again),
-- {'CONFLICT', expected, actual, why} (a conditional append or an import that cannot be).
-- #include prelude

local plan = cjson.decode(ARGV[1])
local sessions, by_sid = {}, {}
for i, p in ipairs(plan.sessions) do
  local k, s = p.keys, nil
  if p.channel then  -- cluster: all 10 keys given (the server checks that each one is here)
    s = {sid = p.id, channel = p.channel, seq = KEYS[k], ev = KEYS[k + 1],
         ids = KEYS[k + 2], index = KEYS[k + 3], record = KEYS[k + 4],
         runs = KEYS[k + 5], fence = KEYS[k + 6], sparse = KEYS[k + 7],
         zones = KEYS[k + 8], types = KEYS[k + 9]}
  else  -- single node: the counter key `<tag>:seq` given, the others named from its tag
    local t = string.sub(KEYS[k], 1, -4)
    s = {sid = p.id, channel = t .. 'n', seq = KEYS[k], ev = t .. 'ev', ids = t .. 'ids',
         index = t .. 'x', record = t .. 's', runs = t .. 'runs', fence = t .. 'del',
         sparse = t .. 'q', zones = t .. 'z', types = t .. 't'}
  end
  if plan.fenced then
    s.fence_state = redis.call('GET', s.fence)
    if s.fence_state == 'busy' then return {'BUSY'} end
  end
  sessions[i] = s; by_sid[s.sid] = s
end
local u = plan.unchanged
if u then
  local got = redis.call('HMGET', sessions[u.session].record, 'v', 'touched')
  if got[1] ~= u.v or (got[2] or '') ~= u.touched then return {'RETRY'} end
end
for _, c in ipairs(plan.run_owner_checks or {}) do
  if (redis.call('HGET', KEYS[plan.run_index], c.run) or '') ~= c.owner then
    return {'RETRY'}
  end
end
local rows = plan.rows or {first = 2, count = 0}
local row  -- row(n): the n-th event row
if rows.packed then
  local data, lens, starts, at = ARGV[rows.packed], rows.lens, {}, 1
  for n = 1, rows.count do starts[n] = at; at = at + lens[n] end
  if at ~= #data + 1 then return redis.error_reply('packed rows: lengths do not add up') end
  row = function(n) return string.sub(data, starts[n], starts[n] + lens[n] - 1) end
else
  local first = rows.first
  row = function(n) return ARGV[first + n - 1] end
end
for _, n in ipairs(plan.claimed or {}) do
  -- cluster: a row found in someone else's claim may not be stored again in a session that a
  -- delete has just emptied (the delete removed its claim); the caller claims afresh.
  local f = fields(row(n), 2)
  local s = by_sid[f[2]]
  if s.fence_state == 'done' and redis.call('HEXISTS', s.ids, f[1]) == 0 then
    return {'RETRY'}
  end
end

local out, claimed, owners = {}, {}, {}
local id_index = plan.id_index and KEYS[plan.id_index]

local function counter(s)
  if not s.last then
    s.last = tonumber(redis.call('GET', s.seq) or '0')
    s.before = s.last
    s.new_rows, s.new_ids, s.new_index, s.new_seqs, s.new_zones = {}, {}, {}, {}, {}
    s.new_types = {}
  end
  return s.last
end

-- Buffers one new row at number seq of session s (written at the end, in wide commands);
-- f: the row's first five fields (id, session, type, run, timestamp).
local function add(s, seq, blob, f)
  local rows_buf, ids_buf, index_buf = s.new_rows, s.new_ids, s.new_index
  rows_buf[#rows_buf + 1] = seq; rows_buf[#rows_buf + 1] = blob
  if id_index then  -- single node: the global pointer holds the number too
    claimed[#claimed + 1] = f[1]; claimed[#claimed + 1] = s.sid .. '\0' .. fmt(seq)
  else
    ids_buf[#ids_buf + 1] = f[1]; ids_buf[#ids_buf + 1] = seq
  end
  local of_type = s.new_types[f[3]]
  if not of_type then of_type = {}; s.new_types[f[3]] = of_type end
  of_type[#of_type + 1] = seq
  if f[4] ~= '' then
    index_buf[#index_buf + 1] = 0
    index_buf[#index_buf + 1] = 'r' .. string.sub(f[4], 2) .. '\0' .. pad(seq)
  end
  s.new_seqs[#s.new_seqs + 1] = seq
  -- what the wake-up message tells readers (wakes.py)
  local w = s.wake
  if not w then
    w = {f = seq, l = seq, t = {}, nt = 0, r = {}, nr = 0, n = false, ts = f[5]}
    s.wake = w
  end
  if seq < w.f then w.f = seq end
  if seq > w.l then w.l = seq end
  if not w.t[f[3]] then w.t[f[3]] = true; w.nt = w.nt + 1 end
  if f[4] == '' then w.n = true
  elseif not w.r[f[4]] then w.r[f[4]] = true; w.nr = w.nr + 1 end
  if int_cmp(f[5], w.ts) > 0 then w.ts = f[5] end
  -- the zone map: the latest timestamp of each block of ZONE numbers, so since can skip
  local z, ts = math.floor(seq / ZONE), f[5]
  local top = s.new_zones[z]
  if not top or int_cmp(ts, top) > 0 then s.new_zones[z] = ts end
  s.got_new = true
end

-- Where an id is stored: returns the session to look in and the number it holds the id at
-- (nil: not stored), or nil after noting an unnamed owner. Single node: the global id index
-- says (`<session>\0<seq>`; an older `<session>` alone: that session's ids hash); a pointer
-- to a named session that does not hold the id is dangling (eviction, a manual delete): the
-- id is free, and the pointer is repaired when the event is stored. Cluster: the session's
-- ids hash.
-- sessions written before issue 13 keep an ids hash (event id -> seq) on a single node too
local function legacy(s)
  if s.legacy == nil then s.legacy = redis.call('EXISTS', s.ids) == 1 end
  return s.legacy
end
local function holder(id, s, known)
  if not id_index then return s, redis.call('HGET', s.ids, id) or nil end
  local v = known
  if v == nil then v = redis.call('HGET', id_index, id) end
  if v then
    local owner, seq = pointer(v)
    local o = by_sid[owner]
    if o == nil then owners[#owners + 1] = owner; return nil end
    if seq then
      if row_is(o.ev, seq, id) then return o, seq end
    elseif legacy(o) then
      local have = redis.call('HGET', o.ids, id)
      if have then return o, have end
    end
  elseif legacy(s) then
    local have = redis.call('HGET', s.ids, id)
    if have then  -- stored, its pointer lost: repair it
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = s.sid .. '\0' .. have
      return s, have
    end
  end
  return s, nil
end

-- Single node, several rows: their id index entries in one HMGET (4,000 at a time), not one
-- HGET each (blobs[n]: the row, heads[n]: its first five fields, known[n]: its entry or false).
local blobs, heads, known = {}, {}, {}
for n = 1, rows.count do
  blobs[n] = row(n); heads[n] = fields5(blobs[n])
end
if id_index and rows.count > 1 then
  for i = 1, rows.count, 4000 do
    local ids = {}
    for n = i, math.min(i + 3999, rows.count) do ids[#ids + 1] = heads[n][1] end
    local got = redis.call('HMGET', id_index, unpack(ids))
    for j = 1, #ids do known[i + j - 1] = got[j] end
  end
end

local numbered = plan.numbered
if numbered then
  -- import: rows keep their numbers; an id already at its number is skipped
  local skipped = 0
  for n = 1, rows.count do
    local blob, f = blobs[n], heads[n]
    local id, seq = f[1], numbered.seqs[n]
    local own = by_sid[f[2]]
    local s, have = holder(id, own, known[n])
    if s and have and s ~= own then
      return {'CONFLICT', seq, -1, 'event ' .. id .. ' is already stored in session ' .. s.sid}
    end
    if s then
      if have then
        if tonumber(have) ~= seq then
          return {'CONFLICT', seq, tonumber(have),
            'event ' .. id .. ' is already stored at sequence ' .. have .. ', not ' .. fmt(seq)}
        end
        skipped = skipped + 1
      elseif redis.call('HEXISTS', s.ev, seq) == 1 then
        return {'CONFLICT', seq, seq, 'the session holds another event at sequence ' .. fmt(seq)}
      else
        counter(s)
        add(s, seq, blob, f)
      end
    end
  end
  if #owners > 0 then return {'OWNERS', owners} end
  out = {rows.count - skipped, skipped}
else
  local all_stored = true
  for n = 1, rows.count do
    local blob, f = blobs[n], heads[n]
    local s, have = holder(f[1], by_sid[f[2]], known[n])
    if s then
      local seq, stored = nil, ''
      if have then
        seq = tonumber(have); stored = redis.call('HGET', s.ev, have)
      else -- a new event of the row's own session
        all_stored = false
        seq = counter(s) + 1
        s.last = seq
        add(s, seq, blob, f)
      end
      out[#out + 1] = seq
      out[#out + 1] = stored
    end
  end
  if #owners > 0 then return {'OWNERS', owners} end
  local e = plan.expected
  if e and not (e.shortcut and all_stored) then
    local s = sessions[e.session]
    local actual = s.last and s.before or counter(s)
    if actual ~= e.sequence then return {'CONFLICT', e.sequence, actual} end
  end
end

-- every check passed. A key of another type would fail a command midway, after earlier
-- writes of this call, and a script is not rolled back, so before the first write every key
-- written is known to be of its type or absent: most are read first (GET, HGET, HEXISTS fail
-- on another type just as a write would, before anything is written), the rest are checked
-- with TYPE here, and the first write (the rows of the first session getting new events)
-- needs neither: nothing precedes it.
local function kind_of(key, kind)
  local t = redis.call('TYPE', key)
  t = type(t) == 'table' and t.ok or t
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE key ' .. key .. ' holds a ' .. t .. ', not a ' .. kind
      .. '; nothing was written')
  end
end
local checks = {}  -- key, kind, ...: what gets a TYPE check
local function check(key, kind) checks[#checks + 1] = key; checks[#checks + 1] = kind end
local function wide(cmd, key, buf)
  for i = 1, #buf, 4000 do
    redis.call(cmd, key, unpack(buf, i, math.min(i + 3999, #buf)))
  end
end
-- Adds the numbers seqs to one type's array (prelude: the type index); start, count: its
-- header. Appends land at the end: the last chunk is rewritten and new ones added. An import
-- below the end rewrites the entries above its lowest number (the only write whose cost is
-- not just what it adds). Reads only: the fields to set go to buf, a new type's directory
-- member to s.new_index.
local function types_add(s, typ, seqs, start, count, buf)
  table.sort(seqs)
  local key = s.types
  if count <= start then
    start, count = 0, 0
    s.new_index[#s.new_index + 1] = 0
    s.new_index[#s.new_index + 1] = 'T' .. typ
  end
  local get, chunk = type_entries(key, typ)
  local p = count
  if count > start and get(count - 1) > seqs[1] then
    p = first_above(get, start, count - 1, seqs[1])
  end
  local merged, j = {}, 1
  for i = p, count - 1 do
    local e = get(i)
    while j <= #seqs and seqs[j] < e do merged[#merged + 1] = seqs[j]; j = j + 1 end
    merged[#merged + 1] = e
  end
  for i = j, #seqs do merged[#merged + 1] = seqs[i] end
  local k, n = math.floor(p / TCHUNK), p % TCHUNK
  local parts = {}
  if n > 0 then parts[1] = string.sub(chunk(k), 1, n * TW) end
  local last, added = -1, 0
  for _, seq in ipairs(merged) do
    if seq ~= last then  -- (a number twice in one import: stored once)
      parts[#parts + 1] = pack5(seq); n = n + 1; added = added + 1; last = seq
      if n == TCHUNK then
        buf[#buf + 1] = typ .. '\0' .. fmt(k); buf[#buf + 1] = table.concat(parts)
        k, n, parts = k + 1, 0, {}
      end
    end
  end
  if n > 0 then buf[#buf + 1] = typ .. '\0' .. fmt(k); buf[#buf + 1] = table.concat(parts) end
  buf[#buf + 1] = typ; buf[#buf + 1] = fmt(start) .. ' ' .. fmt(p + added)
end

-- what each session getting new events writes, read and computed before the first write
local first = nil  -- that session whose rows are the first write (unchecked)
for _, s in ipairs(sessions) do
  if s.got_new then
    if first then check(s.ev, 'hash') else first = s end
    local top = s.last
    for _, seq in ipairs(s.new_seqs) do if seq > top then top = seq end end
    if numbered then top = math.max(top, numbered.latest) end
    s.top = top
    -- a type with an array says the session has the type index; else x says (old_types)
    local old, tbuf = nil, {}
    for typ, seqs in pairs(s.new_types) do
      local start, count, known = type_header(s.types, typ)
      if known then old = false elseif old == nil then old = old_types(s.index) end
      if old then  -- a session written before the type index: as it was
        for _, seq in ipairs(seqs) do
          s.new_index[#s.new_index + 1] = 0
          s.new_index[#s.new_index + 1] = 't' .. typ .. '\0' .. pad(seq)
        end
      else
        types_add(s, typ, seqs, start, count, tbuf)
      end
    end
    s.types_buf = tbuf
    if #s.new_index > 0 then check(s.index, 'zset') end
    local zbuf = {}
    for z, ts in pairs(s.new_zones) do
      local was = redis.call('HGET', s.zones, z)
      if not was or int_cmp(ts, was) > 0 then zbuf[#zbuf + 1] = z; zbuf[#zbuf + 1] = ts end
    end
    s.zones_buf = zbuf
    -- numbers above 'dense' are listed in q once a session has gaps (imports only)
    s.sparse_on = redis.call('EXISTS', s.sparse) == 1
    s.dense_at = nil
    if not s.sparse_on and numbered and #s.new_seqs ~= top - s.before then
      s.dense_at = s.before
      s.sparse_on = true
    end
    if s.sparse_on then check(s.sparse, 'zset') end
  end
end
local raise = nil  -- import: the counter moves to the export's latest even if all was skipped
if numbered then
  local s = sessions[1]
  local was = tonumber(redis.call('GET', s.seq) or '0')
  if not s.got_new and numbered.latest > was then
    raise = {s = s, dense = redis.call('EXISTS', s.sparse) == 0 and was or nil}
    check(s.sparse, 'zset')
  end
end
local rec = plan.session_record
local touched_index = plan.touched_index and KEYS[plan.touched_index]
local rec_v = nil
if rec then
  local s = sessions[rec.session]
  rec_v = math.max(tonumber(redis.call('HGET', s.record, 'v') or '0') + 1, now_us())
  if touched_index then check(touched_index, 'hash') end
  if plan.list_index then
    for j, kind in ipairs({'zset', 'zset', 'zset', 'zset', 'hash', 'hash'}) do
      check(KEYS[plan.list_index[j]], kind)
    end
  end
end
-- sessions whose updated_at becomes now (C5): those with a record, or saved by this call
local touching, seen = {}, {}
local function to_touch(s)
  if seen[s] then return end
  seen[s] = true
  local saved = rec and sessions[rec.session] == s
  if saved or redis.call('HEXISTS', s.record, 'doc') == 1 then
    touching[#touching + 1] = s
    if touched_index then check(touched_index, 'hash') end
  end
end
if plan.touch then
  for _, s in ipairs(sessions) do if s.got_new then to_touch(s) end end
end
for _, i in ipairs(plan.touch_sessions or {}) do to_touch(sessions[i]) end
for _, r in ipairs(plan.runs or {}) do check(sessions[r.session].runs, 'hash') end
for _, r in ipairs(plan.runs_removed or {}) do check(sessions[r.session].runs, 'hash') end
if plan.run_owners then check(KEYS[plan.run_index], 'hash') end
local checked = {}
for i = 1, #checks, 2 do
  local key = checks[i]
  if not checked[key] then
    checked[key] = true
    local bad = kind_of(key, checks[i + 1])
    if bad then return bad end
  end
end

-- write
if first then wide('HSET', first.ev, first.new_rows) end
for _, s in ipairs(sessions) do
  if s.got_new then
    if s ~= first then wide('HSET', s.ev, s.new_rows) end
    redis.call('SET', s.seq, fmt(s.top))
    if #s.new_ids > 0 then wide('HSET', s.ids, s.new_ids) end
    if #s.types_buf > 0 then wide('HSET', s.types, s.types_buf) end
    if #s.new_index > 0 then wide('ZADD', s.index, s.new_index) end
    if #s.zones_buf > 0 then wide('HSET', s.zones, s.zones_buf) end
    if s.dense_at then redis.call('ZADD', s.sparse, s.dense_at, 'dense') end
    if s.sparse_on then
      local buf = {}
      for _, seq in ipairs(s.new_seqs) do buf[#buf + 1] = seq; buf[#buf + 1] = seq end
      wide('ZADD', s.sparse, buf)
    end
  end
end
if #claimed > 0 then wide('HSET', id_index, claimed) end
if raise then
  if raise.dense then redis.call('ZADD', raise.s.sparse, raise.dense, 'dense') end
  redis.call('SET', raise.s.seq, fmt(numbered.latest))
end

local version = ''
if rec then
  local s, doc = sessions[rec.session], ARGV[rec.doc]
  redis.call('HSET', s.record, 'doc', doc, 'v', fmt(rec_v))
  redis.call('HDEL', s.record, 'touched')
  if touched_index then redis.call('HDEL', touched_index, s.sid) end
  version = fmt(rec_v)
  if plan.list_index then
    local m = rec.members
    index_put(plan.list_index, s.sid, rec_v, doc,
      {ARGV[m], ARGV[m + 1], ARGV[m + 2], ARGV[m + 3]}, false)
  end
end
for _, r in ipairs(plan.runs or {}) do
  redis.call('HSET', sessions[r.session].runs, r.id, ARGV[r.doc])
end
for _, r in ipairs(plan.runs_removed or {}) do
  redis.call('HDEL', sessions[r.session].runs, r.id)
end
for _, o in ipairs(plan.run_owners or {}) do
  redis.call('HSET', KEYS[plan.run_index], o.run, o.session)
end
if #touching > 0 then
  local now = fmt(now_us())
  for _, s in ipairs(touching) do
    redis.call('HSET', s.record, 'touched', now)
    if touched_index then redis.call('HSET', touched_index, s.sid, now) end
  end
end
local function wake_message(w)
  local types, runs = {}, {}
  for t in pairs(w.t) do types[#types + 1] = t end
  local msg = '{"f":"' .. fmt(w.f) .. '","l":"' .. fmt(w.l) .. '","ts":"' .. w.ts
    .. '","t":' .. cjson.encode(types)
  if w.nr <= 32 then  -- wakes.MAX_RUNS: more, and any run may match
    for r in pairs(w.r) do runs[#runs + 1] = string.sub(r, 2) end
    msg = msg .. ',"n":' .. (w.n and 'true' or 'false')
    if #runs > 0 then msg = msg .. ',"r":' .. cjson.encode(runs) else msg = msg .. ',"r":[]' end
  end
  return msg .. '}'
end
if plan.publish then
  for _, s in ipairs(sessions) do
    if s.got_new then redis.call(plan.publish, s.channel, wake_message(s.wake)) end
  end
end
return {'OK', out, version}
