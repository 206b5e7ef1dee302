#!lua
-- The one write script: appends, flushes, session and run saves (plan.py builds the call).
-- ARGV[1] is the plan (JSON, fields below); event rows and documents travel as plain ARGV
-- strings at the positions the plan names. Every check runs before the first write, so a
-- refused call ('BUSY', 'RETRY', 'OWNERS') changed nothing and consumed no sequence number.
--
-- plan.sessions         [{id, keys, channel}]: keys = KEYS position of the session's 7 keys
--                       (seq, ev, ids, x, s, runs, del)
-- plan.rows             {first, count}: ARGV positions of the event rows; each row is stored
--                       in the session its own session field names (plan.sessions has it)
-- plan.claimed          row numbers whose row is another writer's claim (cluster)
-- plan.fenced           honour delete fences (cluster)
-- plan.id_index         KEYS position of the global event id -> session hash (single node)
-- plan.session_record   {session, doc, members}: session number, ARGV positions
-- plan.list_index       KEYS positions of the 6 list_sessions index keys (single node)
-- plan.runs             [{session, id, doc}]: run documents to store
-- plan.runs_removed     [{session, id}]: runs to drop (a run moved to another session)
-- plan.run_index        KEYS position of the run id -> session hash (single node)
-- plan.run_owners       [{run, session}]: run index entries to set
-- plan.run_owner_checks [{run, owner}]: refuse ('RETRY') unless the run index still says so
-- plan.publish          'PUBLISH' or 'SPUBLISH': announce sessions that got new events
-- Returns {'OK', {seq, stored, ...} per row, session version}: stored is '' for a new row,
-- else the row stored earlier under that id (in whichever named session holds it).
-- Refusals: {'BUSY'} (a delete fence), {'RETRY'} (a check failed: plan again),
-- {'OWNERS', session ids} (ids stored in sessions not named: name them and call again).
-- #include prelude

local plan = cjson.decode(ARGV[1])
local sessions, by_sid = {}, {}
for i, p in ipairs(plan.sessions) do
  local k = p.keys
  local s = {sid = p.id, channel = p.channel, seq = KEYS[k], ev = KEYS[k + 1],
             ids = KEYS[k + 2], index = KEYS[k + 3], record = KEYS[k + 4],
             runs = KEYS[k + 5], fence = KEYS[k + 6]}
  if plan.fenced then
    s.fence_state = redis.call('GET', s.fence)
    if s.fence_state == 'busy' then return {'BUSY'} end
  end
  sessions[i] = s; by_sid[s.sid] = s
end
for _, c in ipairs(plan.run_owner_checks or {}) do
  if (redis.call('HGET', KEYS[plan.run_index], c.run) or '') ~= c.owner then
    return {'RETRY'}
  end
end
local rows = plan.rows or {first = 2, count = 0}
local first, last_row = rows.first, rows.first + rows.count - 1
for _, n in ipairs(plan.claimed or {}) do
  -- cluster: a row found in someone else's claim may not be stored again in a session that a
  -- delete has just emptied (the delete removed its claim); the caller claims afresh.
  local f = fields(ARGV[first + n - 1], 2)
  local s = by_sid[f[2]]
  if s.fence_state == 'done' and redis.call('HEXISTS', s.ids, f[1]) == 0 then
    return {'RETRY'}
  end
end

-- writes are gathered and sent in a few wide commands at the end (ids in one call are unique)
local out, claimed, owners = {}, {}, {}
local id_index = plan.id_index and KEYS[plan.id_index]
for a = first, last_row do
  local blob = ARGV[a]
  local f = fields(blob, 4)
  local id, s, stored = f[1], by_sid[f[2]], ''
  if id_index then
    -- single node: the global id index is in this same atomic step
    local owner = redis.call('HGET', id_index, id)
    if owner and owner ~= s.sid then
      local o = by_sid[owner]
      if o == nil then
        owners[#owners + 1] = owner -- not named in this call: the caller names it, calls again
      elseif redis.call('HEXISTS', o.ids, id) == 1 then
        s = o -- stored there: that is the event to return
      else
        owner = nil -- a dangling pointer (eviction, manual delete): the id is free, repair it
      end
    end
    if not owner then
      claimed[#claimed + 1] = id
      claimed[#claimed + 1] = f[2]
    end
  end
  local have = redis.call('HGET', s.ids, id)
  local seq
  if have then
    seq = tonumber(have); stored = redis.call('HGET', s.ev, have)
  else -- a new event of the row's own session
    if not s.last then
      s.last = tonumber(redis.call('GET', s.seq) or '0')
      s.new_rows, s.new_ids, s.new_index = {}, {}, {}
    end
    seq = s.last + 1
    s.last = seq
    local p = pad(seq)
    local rows_buf, ids_buf, index_buf = s.new_rows, s.new_ids, s.new_index
    rows_buf[#rows_buf + 1] = seq; rows_buf[#rows_buf + 1] = blob
    ids_buf[#ids_buf + 1] = id; ids_buf[#ids_buf + 1] = seq
    index_buf[#index_buf + 1] = 0; index_buf[#index_buf + 1] = 't' .. f[3] .. '\0' .. p
    if f[4] ~= '' then
      index_buf[#index_buf + 1] = 0
      index_buf[#index_buf + 1] = 'r' .. string.sub(f[4], 2) .. '\0' .. p
    end
    s.got_new = true
  end
  out[#out + 1] = seq
  out[#out + 1] = stored
end
if #owners > 0 then return {'OWNERS', owners} end

local function wide(cmd, key, buf)
  for i = 1, #buf, 4000 do
    redis.call(cmd, key, unpack(buf, i, math.min(i + 3999, #buf)))
  end
end
if #claimed > 0 then wide('HSET', id_index, claimed) end
for _, s in ipairs(sessions) do
  if s.got_new then
    redis.call('SET', s.seq, s.last)
    wide('HSET', s.ev, s.new_rows)
    wide('HSET', s.ids, s.new_ids)
    wide('ZADD', s.index, s.new_index)
  end
end

local version = ''
local rec = plan.session_record
if rec then
  local s, doc = sessions[rec.session], ARGV[rec.doc]
  local v = math.max(tonumber(redis.call('HGET', s.record, 'v') or '0') + 1, now_us())
  redis.call('HSET', s.record, 'doc', doc, 'v', fmt(v))
  version = fmt(v)
  if plan.list_index then
    local m = rec.members
    index_put(plan.list_index, s.sid, v, doc, {ARGV[m], ARGV[m + 1], ARGV[m + 2], ARGV[m + 3]},
      false)
  end
end
for _, r in ipairs(plan.runs or {}) do redis.call('HSET', sessions[r.session].runs, r.id, ARGV[r.doc]) end
for _, r in ipairs(plan.runs_removed or {}) do redis.call('HDEL', sessions[r.session].runs, r.id) end
for _, o in ipairs(plan.run_owners or {}) do
  redis.call('HSET', KEYS[plan.run_index], o.run, o.session)
end
if plan.publish then
  for _, s in ipairs(sessions) do
    if s.got_new then redis.call(plan.publish, s.channel, '1') end
  end
end
return {'OK', out, version}
