/**
 * The Lua scripts of the Redis buffer (redis.ts), one per operation, each run
 * atomically by Redis. Kept apart from the TypeScript that calls them; the
 * data layout they share is described at the top of redis.ts.
 */

/** Audit records kept (the list is trimmed to this many, newest first). */
const AUDIT_MAX = 10_000;

/** Shared by every script: ARGV[1] is the key prefix. */
export const PRELUDE = `
local P = ARGV[1]
local STATES = {'pending', 'in_flight', 'blocked', 'failed', 'synced', 'discarded'}
local function K(name) return P .. name end
local function txKey(seq) return P .. 'tx:' .. seq end
local function setKey(state) return P .. 'state:' .. state end
local function field(seq, f) return redis.call('HGET', txKey(seq), f) end
-- Set by anything that changes what verify recounts; a mutating script then bumps the epoch once.
local MOVED = false
-- One transaction to another state: its set, its record and the byte counters change together.
local function move(seq, from, to, now)
  MOVED = true
  local bytes = tonumber(field(seq, 'bytes'))
  redis.call('ZREM', setKey(from), seq)
  redis.call('ZADD', setKey(to), seq, seq)
  redis.call('HSET', txKey(seq), 'state', to, 'updated_at', now)
  redis.call('HINCRBY', K('counters'), 'bytes_' .. from, -bytes)
  redis.call('HINCRBY', K('counters'), 'bytes_' .. to, bytes)
end
-- True when the transaction's depends_on names a seq in set (keyed by seq string).
local function dependsOn(seq, set)
  local raw = field(seq, 'depends_on')
  if raw == '[]' then return false end
  for _, d in ipairs(cjson.decode(raw)) do
    if set[tostring(d)] then return true end
  end
  return false
end
-- The seqs named by the transaction's order_only field (absent: none), as a set keyed by seq string.
local function orderOnly(seq)
  local set, raw = {}, field(seq, 'order_only')
  if raw then for _, d in ipairs(cjson.decode(raw)) do set[tostring(d)] = true end end
  return set
end
-- True when the transaction creates no row (only updates and upserts): none can need it, and one that
-- waits on it only follows it. Written by this build, such a wait is in order_only; builds before
-- 2026-11-26 made a write wait on the row's last writer (a finish, a finalize, a preferences upsert).
local function createsNothing(seq)
  local raw = field(seq, 'steps')
  if not raw then return false end
  for _, st in ipairs(cjson.decode(raw)) do
    if st.op == 'create' or st.op == 'bulk_create' then return false end
  end
  return true
end
-- The parent that would send seq straight back to blocked, as {parent seq, parent id, parent state}, or nil:
-- one it needs (not one it only follows) that was discarded, one in held (keyed by seq string: then the
-- discarded one that holds that parent), and with failedToo one still failed or blocked.
local function holder(seq, held, failedToo)
  local order
  for _, d in ipairs(cjson.decode(field(seq, 'depends_on'))) do
    local parent = tostring(d)
    if held[parent] then return held[parent] end
    local state = field(parent, 'state')
    local holds = (failedToo and (state == 'failed' or state == 'blocked'))
    if not holds and state == 'discarded' then
      order = order or orderOnly(seq)
      holds = not order[parent] and not createsNothing(parent)
    end
    if holds then return {tonumber(parent), field(parent, 'transaction_id'), state} end
  end
  return nil
end
local function heldEntry(seq, by) return {tonumber(seq), field(seq, 'transaction_id'), by[1], by[2], by[3]} end
-- Enters seq in the dependency index under each parent its depends_on (JSON) names that is still held:
-- a parent already compacted (synced) holds nobody back, and its entry is one nothing would remove.
local function indexChild(seq, dependsOnJson)
  if dependsOnJson == '[]' then return end
  for _, d in ipairs(cjson.decode(dependsOnJson)) do
    if redis.call('EXISTS', txKey(d)) == 1 then redis.call('ZADD', K('children:' .. d), seq, seq) end
  end
end
-- Who waits on seq (the dependency index: children:<seq>), with the state of each still held.
local UNSYNCED = {pending = true, in_flight = true, blocked = true}
local function children(seq)
  local rows = {}
  for _, s in ipairs(redis.call('ZRANGE', K('children:' .. seq), 0, -1)) do
    local st = field(s, 'state')
    if st and UNSYNCED[st] then rows[#rows + 1] = {s, st} end
  end
  return rows
end
-- Every dependent (transitively, through the dependency index) of the seqs in queue that is not in stuck
-- (keyed by seq string; both grow as it goes): pending ones become blocked.
local function blockDependents(queue, stuck, now)
  while #queue > 0 do
    local p = table.remove(queue)
    for _, row in ipairs(children(p)) do
      if not stuck[row[1]] then
        stuck[row[1]] = true
        queue[#queue + 1] = row[1]
        if row[2] == 'pending' then move(row[1], 'pending', 'blocked', now) end
      end
    end
  end
end
-- Blocked dependents of seq back to pending: those startsFn names, and those waiting on one in freed
-- (which grows, so whole chains go), found through the dependency index; not one that another parent
-- still holds (the claim would block it again). Returns their seqs, in order.
local function releaseBlocked(seq, freed, startsFn, now)
  local released, queue = {}, {seq}
  while #queue > 0 do
    local p = table.remove(queue)
    for _, row in ipairs(children(p)) do
      if row[2] == 'blocked' and not freed[row[1]] and (startsFn(row[1]) or dependsOn(row[1], freed))
          and not holder(row[1], {}, true) then
        freed[row[1]] = true
        released[#released + 1] = tonumber(row[1])
        queue[#queue + 1] = row[1]
        move(row[1], 'blocked', 'pending', now)
      end
    end
  end
  table.sort(released)
  return released
end
local function audit(now, id, seq, action, actor, reason)
  redis.call('LPUSH', K('audit'), cjson.encode({at = now, transaction_id = id, seq = tonumber(seq),
    action = action, actor = actor, reason = reason}))
  redis.call('LTRIM', K('audit'), 0, ${AUDIT_MAX - 1})
end
-- Counts (ZCARD), counters, last seq and the oldest pending/in-flight created_at, as flat name/value pairs.
local function statsFlat()
  local out = {}
  for _, st in ipairs(STATES) do out[#out + 1] = st; out[#out + 1] = redis.call('ZCARD', setKey(st)) end
  for _, v in ipairs(redis.call('HGETALL', K('counters'))) do out[#out + 1] = v end
  out[#out + 1] = 'last_seq'; out[#out + 1] = redis.call('GET', K('seq')) or '0'
  local oldest
  for _, st in ipairs({'pending', 'in_flight'}) do
    local first = redis.call('ZRANGE', setKey(st), 0, 0)[1]
    if first and (not oldest or tonumber(first) < tonumber(oldest)) then oldest = first end
  end
  if oldest then out[#out + 1] = 'oldest'; out[#out + 1] = field(oldest, 'created_at') end
  return out
end
`;

// APPEND: every id is checked (against the store and within the batch) before anything is written: all or none.
const APPEND_LUA = `
local now, n, W = ARGV[2], tonumber(ARGV[3]), 8
local seen = {}
for i = 0, n - 1 do
  local id = ARGV[4 + i * W]
  if seen[id] or redis.call('HEXISTS', K('ids'), id) == 1 then return {'duplicate', id} end
  seen[id] = true
end
local last = tonumber(redis.call('GET', K('seq')) or '0')
-- The caller has seen seqs up to this one: a counter below it means Redis lost data (restarted without it).
if last < tonumber(ARGV[4 + n * W] or '0') then return {'behind', last} end
local total = 0
for i = 0, n - 1 do
  local a, seq = 4 + i * W, last + i + 1
  redis.call('HSET', txKey(seq), 'seq', seq, 'transaction_id', ARGV[a], 'site', ARGV[a + 1], 'endpoint', ARGV[a + 2],
    'created_at', ARGV[a + 3], 'steps', ARGV[a + 4], 'depends_on', ARGV[a + 5], 'bytes', ARGV[a + 6],
    'state', 'pending', 'attempts', 0, 'updated_at', now)
  if ARGV[a + 7] ~= '' then redis.call('HSET', txKey(seq), 'order_only', ARGV[a + 7]) end
  redis.call('HSET', K('ids'), ARGV[a], seq)
  redis.call('ZADD', setKey('pending'), seq, seq)
  indexChild(seq, ARGV[a + 5])
  total = total + tonumber(ARGV[a + 6])
end
redis.call('SET', K('seq'), last + n)
-- The dependency index covers these too, if it covered every seq before them (see INDEX_DEPS).
if tonumber(redis.call('GET', K('deps_through')) or '0') >= last then redis.call('SET', K('deps_through'), last + n) end
MOVED = true
redis.call('HINCRBY', K('counters'), 'accepted_total', n)
redis.call('HINCRBY', K('counters'), 'bytes_pending', total)
return {'ok', last + 1}
`;

// CLAIM: oldest pending first under the count and byte caps (at least one); a child of a failed, blocked,
// discarded or just-blocked parent goes to blocked instead, so it is never sent ahead of its parent.
const CLAIM_LUA = `
local now, maxCount, maxBytes, notAfterInFlight = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
-- A daemon claims only while it holds the buffer's lease (ARGV[6], its value; '' for a caller that holds none).
if ARGV[6] ~= '' and redis.call('GET', K('daemon')) ~= ARGV[6] then
  return redis.error_reply('OPSDB_LEASE ' .. (redis.call('GET', K('daemon')) or 'nobody'))
end
local BLOCKING = {failed = true, blocked = true, discarded = true}
local out, bytes, blockedNow, after = {}, 0, {}, '-inf'
while #out < maxCount do
  local seqs = redis.call('ZRANGEBYSCORE', setKey('pending'), after, '+inf', 'LIMIT', 0, math.max(maxCount * 2, 64))
  if #seqs == 0 then break end
  for _, seq in ipairs(seqs) do
    after = '(' .. seq
    local stuck, parentInFlight, order = false, false, orderOnly(seq)
    for _, d in ipairs(cjson.decode(field(seq, 'depends_on'))) do
      local parent = tostring(d)
      local state = field(parent, 'state') or 'synced'
      -- A discarded parent it only had to follow holds it no longer.
      if blockedNow[parent] or (BLOCKING[state] and not (state == 'discarded' and (order[parent] or createsNothing(parent)))) then stuck = true; break end
      if state == 'in_flight' then parentInFlight = true end
    end
    if not stuck and notAfterInFlight and parentInFlight then return out end
    if stuck then
      move(seq, 'pending', 'blocked', now)
      blockedNow[seq] = true
    else
      local b = tonumber(field(seq, 'bytes'))
      if #out >= maxCount or (#out > 0 and bytes + b > maxBytes) then return out end
      move(seq, 'pending', 'in_flight', now)
      bytes = bytes + b
      out[#out + 1] = redis.call('HGETALL', txKey(seq))
    end
  end
end
return out
`;

// SETTLE: outcomes in seq order, only for in-flight transactions (idempotent); a failure blocks its
// unsynced dependents transitively, and a rejected/retried child of a parent failed in this call is blocked.
// The dependents are found through the dependency index: the work grows with them, not with the backlog
// (a scan of the backlog after each failure held Redis, and every write, for seconds with a large backlog).
const SETTLE_LUA = `
local now, n = ARGV[2], tonumber(ARGV[3])
local stuck, queue = {}, {}
for i = 0, n - 1 do
  local a = 4 + i * 4
  local seq, outcome, err, result = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  if field(seq, 'state') == 'in_flight' then
    local parentFailed = dependsOn(seq, stuck)
    local to
    if outcome == 'applied' or outcome == 'duplicate' then to = 'synced'
    elseif outcome == 'rejected' then to = parentFailed and 'blocked' or 'failed'
    else to = parentFailed and 'blocked' or 'pending' end
    move(seq, 'in_flight', to, now)
    redis.call('HINCRBY', txKey(seq), 'attempts', 1)
    if err ~= '' then redis.call('HSET', txKey(seq), 'last_error', err) end
    if result ~= '' then redis.call('HSET', txKey(seq), 'central_result', result) end
    if to == 'synced' then redis.call('HINCRBY', K('counters'), 'applied_total', 1) end
    if to == 'failed' or to == 'blocked' then
      stuck[seq] = true
      queue[#queue + 1] = seq
    end
  end
end
blockDependents(queue, stuck, now)
return 0
`;

// RELEASE: every in-flight transaction back to pending, in one step.
const RELEASE_LUA = `
local seqs = redis.call('ZRANGE', setKey('in_flight'), 0, -1)
for _, seq in ipairs(seqs) do move(seq, 'in_flight', 'pending', ARGV[2]) end
return #seqs
`;

// RETRY: a failed or blocked transaction, then its blocked dependents transitively, back to pending, with an
// audit record; one a parent holds is left as it is. Returns {released seqs, held entries}.
const RETRY_LUA = `
local now, id, actor = ARGV[2], ARGV[3], ARGV[4]
local seq = redis.call('HGET', K('ids'), id)
if not seq then return {{}, {}} end
local st = field(seq, 'state')
if st ~= 'failed' and st ~= 'blocked' then return {{}, {}} end
local by = holder(seq, {}, true)
-- Through parents blocked themselves, to the one an operator can act on: one failed, or discarded.
while by and by[3] == 'blocked' do
  local up = holder(tostring(by[1]), {}, true)
  if not up then break end
  by = up
end
if by then return {{}, {heldEntry(seq, by)}} end
move(seq, st, 'pending', now)
audit(now, id, seq, 'retry', actor, nil)
local released = {tonumber(seq)}
for _, s in ipairs(releaseBlocked(seq, {[seq] = true}, function() return false end, now)) do released[#released + 1] = s end
return {released, {}}
`;

// RETRY_ALL: every failed and blocked transaction back to pending, with one audit record, except those that
// need a discarded one (directly, or through one held here). Returns {released seqs, held entries}.
const RETRY_ALL_LUA = `
local now, actor = ARGV[2], ARGV[3]
local rows = {}
for _, st in ipairs({'failed', 'blocked'}) do
  for _, seq in ipairs(redis.call('ZRANGE', setKey(st), 0, -1)) do rows[#rows + 1] = {tonumber(seq), st} end
end
-- In seq order: a parent is settled (released or held) before what waits on it.
table.sort(rows, function(a, b) return a[1] < b[1] end)
local released, held, heldSeqs = {}, {}, {}
for _, row in ipairs(rows) do
  local seq = tostring(row[1])
  local by = holder(seq, heldSeqs, false)
  if by then
    heldSeqs[seq] = by
    held[#held + 1] = heldEntry(seq, by)
  else
    move(seq, row[2], 'pending', now)
    released[#released + 1] = row[1]
  end
end
if #released > 0 then audit(now, '*', 0, 'retry', actor, 'retry-all: ' .. #released) end
return {released, held}
`;

// DISCARD: failed or blocked → discarded (kept whole), counted, with an audit record; 0 for any other state.
// Blocked ones that only had to follow it (order_only), and what waits on them, go back to pending.
const DISCARD_LUA = `
local now, id, actor, reason = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local seq = redis.call('HGET', K('ids'), id)
if not seq then return 0 end
local st = field(seq, 'state')
if st ~= 'failed' and st ~= 'blocked' then return 0 end
move(seq, st, 'discarded', now)
redis.call('HINCRBY', K('counters'), 'discarded_total', 1)
audit(now, id, seq, 'discard', actor, reason)
local nothing = createsNothing(seq)
releaseBlocked(seq, {}, function(s) return nothing or orderOnly(s)[seq] == true end, now)
return 1
`;

// SKIP_TO: the seq counter up to ARGV[2] (never down), with an audit record; 0 when it was there already.
const SKIP_TO_LUA = `
local n, now, actor, reason = tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local cur = tonumber(redis.call('GET', K('seq')) or '0')
if cur >= n then return 0 end
redis.call('SET', K('seq'), n)
audit(now, '-', n, 'seq_gap', actor, reason)
return 1
`;

// COMPACT: synced transactions with seq ≤ ARGV[2] leave the store with their id mappings and byte counts.
// COMPACT: up to ARGV[5] synced transactions with seq <= ARGV[2], oldest first, each leaving a receipt: its
// record without the steps, as JSON, expiring after ARGV[4] seconds (ARGV[3]: now). Chunked by the caller,
// so one call never holds Redis for long.
const COMPACT_LUA = `
local keep = tonumber(ARGV[6])
-- The index of kept transactions loses, from its start, those whose key expired (a bounded number per call).
for _ = 1, 1000 do
  local first = redis.call('ZRANGE', K('kept'), 0, 0)[1]
  if not first or redis.call('EXISTS', K('kept:' .. first)) == 1 then break end
  redis.call('ZREM', K('kept'), first)
end
local seqs = redis.call('ZRANGEBYSCORE', setKey('synced'), '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[5]))
local FIELDS = {'seq', 'transaction_id', 'site', 'endpoint', 'created_at', 'depends_on', 'bytes', 'state', 'attempts',
  'last_error', 'central_result', 'updated_at'}
local bytes = 0
for _, seq in ipairs(seqs) do
  local v = redis.call('HMGET', txKey(seq), unpack(FIELDS))
  local steps = keep > 0 and field(seq, 'steps')
  local order = keep > 0 and field(seq, 'order_only')
  local receipt = {compacted_at = ARGV[3]}
  for i, f in ipairs(FIELDS) do
    if v[i] then receipt[f] = v[i] end
  end
  -- Deletes first: Redis at maxmemory refuses a script whose first write needs memory (SET), but lets
  -- one that has begun by freeing some run to its end. Compaction is what frees a full buffer.
  redis.call('HDEL', K('ids'), v[2])
  -- Its own children:<seq> stays while they are held (each leaves it at its compaction): a synced parent holds
  -- nobody back, but FAIL_SYNCED may put it back, and then it needs its dependents again.
  redis.call('DEL', txKey(seq))
  if v[6] and v[6] ~= '[]' then
    for _, d in ipairs(cjson.decode(v[6])) do redis.call('ZREM', K('children:' .. d), seq) end
  end
  redis.call('SET', K('receipt:' .. v[2]), cjson.encode(receipt), 'EX', ARGV[4])
  if steps then
    -- Kept whole for keep seconds, to be sent again to a central restored from a backup (REPLAYABLE).
    redis.call('HSET', K('kept:' .. seq), 'transaction_id', v[2], 'site', v[3], 'endpoint', v[4], 'created_at', v[5], 'steps', steps)
    if order then redis.call('HSET', K('kept:' .. seq), 'order_only', order) end
    redis.call('EXPIRE', K('kept:' .. seq), keep)
    redis.call('ZADD', K('kept'), seq, seq)
  end
  bytes = bytes + tonumber(v[7])
end
if #seqs > 0 then
  MOVED = true
  -- Ascending, so these are exactly the synced seqs up to the last one taken.
  redis.call('ZREMRANGEBYSCORE', setKey('synced'), '-inf', seqs[#seqs])
  redis.call('HINCRBY', K('counters'), 'bytes_synced', -bytes)
end
return #seqs
`;

// REPLAYABLE: synced transactions with seq > ARGV[2], at most ARGV[3] of each kind, as flat
// {seq, transaction_id, site, endpoint, created_at, steps} lists: those kept after compaction, then those
// still held. The caller merges them by seq. Kept entries whose hash expired are dropped from the index
// as they are met, and the read goes on past them: ARGV[3] live ones, or the end of the index.
const REPLAYABLE_LUA = `
local after, limit = ARGV[2], tonumber(ARGV[3])
local out = {}
local function take(key, seq)
  local v = redis.call('HMGET', key, 'transaction_id', 'site', 'endpoint', 'created_at', 'steps')
  if v[1] and v[5] then out[#out + 1] = {seq, v[1], v[2], v[3], v[4], v[5]}; return true end
  return false
end
local live, from = 0, '(' .. after
while live < limit do
  local seqs = redis.call('ZRANGEBYSCORE', K('kept'), from, '+inf', 'LIMIT', 0, limit)
  if #seqs == 0 then break end
  for _, seq in ipairs(seqs) do
    if live < limit then
      if take(K('kept:' .. seq), seq) then live = live + 1 else redis.call('ZREM', K('kept'), seq) end
    end
    from = '(' .. seq
  end
end
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', setKey('synced'), '(' .. after, '+inf', 'LIMIT', 0, limit)) do take(txKey(seq), seq) end
return out
`;

// FAIL_SYNCED: synced transactions central refused when sent again (ARGV[3..]: seq, error JSON pairs, in seq
// order; ARGV[2]: now) back to failed, or blocked under a parent refused in this call: held ones moved, compacted
// ones made whole again from their kept copy and receipt (both go). Applied no more: applied_total goes down.
// Their pending dependents in the dependency index are blocked, as settle does. Returns {moved seqs, those of
// them compacted by a build that dropped their entries in the index (seq <= deps_kept_after)}: CHILDREN_OF
// puts those back.
const FAIL_SYNCED_LUA = `
-- Blocked behind a parent central refused (in this call, or before) or that waits itself, as in settle.
local function heldBack(seq, moved)
  if dependsOn(seq, moved) then return true end
  for _, d in ipairs(cjson.decode(field(seq, 'depends_on'))) do
    local st = field(d, 'state')
    if st == 'failed' or st == 'blocked' then return true end
  end
  return false
end
local now = ARGV[2]
local moved, out, revived = {}, {}, {}
for i = 3, #ARGV, 2 do
  local seq, err = ARGV[i], ARGV[i + 1]
  local state, to, deps = field(seq, 'state'), nil, nil
  if moved[seq] then state = 'done' end
  if state == 'synced' then
    deps = field(seq, 'depends_on')
    to = heldBack(seq, moved) and 'blocked' or 'failed'
    move(seq, 'synced', to, now)
    redis.call('HSET', txKey(seq), 'last_error', err)
    -- Central's answer then (applied, at a position of the history it lost) no longer stands.
    redis.call('HDEL', txKey(seq), 'central_result')
  elseif not state then
    local v = redis.call('HMGET', K('kept:' .. seq), 'transaction_id', 'site', 'endpoint', 'created_at', 'steps', 'order_only')
    if v[1] and v[5] then
      MOVED = true
      local raw = redis.call('GET', K('receipt:' .. v[1]))
      local r = raw and cjson.decode(raw) or {}
      deps = r.depends_on or '[]'
      local bytes = tonumber(r.bytes) or (#v[5] + #v[3] + 128)
      redis.call('HSET', txKey(seq), 'seq', seq, 'transaction_id', v[1], 'site', v[2], 'endpoint', v[3], 'created_at', v[4],
        'steps', v[5], 'depends_on', deps, 'bytes', bytes, 'attempts', r.attempts or '0', 'last_error', err, 'updated_at', now)
      to = heldBack(seq, moved) and 'blocked' or 'failed'
      redis.call('HSET', txKey(seq), 'state', to)
      redis.call('HSET', K('ids'), v[1], seq)
      redis.call('ZADD', setKey(to), seq, seq)
      redis.call('HINCRBY', K('counters'), 'bytes_' .. to, bytes)
      redis.call('DEL', K('kept:' .. seq), K('receipt:' .. v[1]))
      redis.call('ZREM', K('kept'), seq)
      if v[6] then redis.call('HSET', txKey(seq), 'order_only', v[6]) end
      if tonumber(seq) <= tonumber(redis.call('GET', K('deps_kept_after')) or '0') then revived[#revived + 1] = tonumber(seq) end
    end
  end
  if to then
    redis.call('HINCRBY', K('counters'), 'applied_total', -1)
    indexChild(seq, deps)
    moved[seq] = true
    out[#out + 1] = tonumber(seq)
  end
end
local queue = {}
for _, seq in ipairs(out) do queue[#queue + 1] = tostring(seq) end
blockDependents(queue, moved, now)
return {out, revived}
`;

// CHILDREN_OF: seqs ARGV[3]+1 … ARGV[3]+ARGV[4] (a chunk): each not yet synced whose depends_on names one
// of ARGV[2] (a JSON array of the compacted seqs FAIL_SYNCED made whole again) is indexed under it again and,
// pending, blocked; so is a pending one whose parent is blocked (chains go, chunk after chunk, in seq order).
// Returns the last seq looked at.
const CHILDREN_OF_LUA = `
local parents = {}
for _, p in ipairs(cjson.decode(ARGV[2])) do parents[tostring(p)] = true end
local from, n, now = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local last = math.min(from + n, tonumber(redis.call('GET', K('seq')) or '0'))
for seq = from + 1, last do
  local v = redis.call('HMGET', txKey(seq), 'state', 'depends_on')
  if v[1] and v[1] ~= 'synced' and v[1] ~= 'discarded' and v[2] and v[2] ~= '[]' then
    local stuck = false
    for _, d in ipairs(cjson.decode(v[2])) do
      local parent = tostring(d)
      if parents[parent] then
        redis.call('ZADD', K('children:' .. parent), seq, seq)
        stuck = true
      elseif field(parent, 'state') == 'blocked' then
        stuck = true
      end
    end
    if stuck and v[1] == 'pending' then move(tostring(seq), 'pending', 'blocked', now) end
  end
end
return last
`;

// DROP_KEPT: up to ARGV[2] of the kept copies, oldest first (Redis is short of memory: they give way
// first; they are at central). Deletes only, so it runs at maxmemory. Returns how many went.
const DROP_KEPT_LUA = `
local seqs = redis.call('ZRANGE', K('kept'), 0, tonumber(ARGV[2]) - 1)
for _, seq in ipairs(seqs) do redis.call('DEL', K('kept:' .. seq)) end
if #seqs > 0 then redis.call('ZREMRANGEBYRANK', K('kept'), 0, #seqs - 1) end
return #seqs
`;

// GET (read): one transaction by id, from one snapshot.
const GET_LUA = `
local seq = redis.call('HGET', K('ids'), ARGV[2])
if not seq then return {} end
return redis.call('HGETALL', txKey(seq))
`;

// LIST (read): up to ARGV[4] transactions with seq > ARGV[3], in seq order, from state ARGV[2] or from all.
const LIST_LUA = `
local limit = tonumber(ARGV[4])
local seqs = {}
for _, st in ipairs(ARGV[2] ~= '' and {ARGV[2]} or STATES) do
  for _, s in ipairs(redis.call('ZRANGEBYSCORE', setKey(st), '(' .. ARGV[3], '+inf', 'LIMIT', 0, limit)) do
    seqs[#seqs + 1] = tonumber(s)
  end
end
table.sort(seqs)
local out = {}
for i = 1, math.min(limit, #seqs) do out[i] = redis.call('HGETALL', txKey(seqs[i])) end
return out
`;

// STATES (read): the state of each seq in ARGV[2..], false when not held.
const STATES_LUA = `
local out = {}
for i = 2, #ARGV do out[i - 1] = field(ARGV[i], 'state') end
return out
`;

// STATS (read): counters and set sizes from one snapshot, no scan.
const STATS_LUA = `return statsFlat()`;

// VERIFY (read): the transactions with ARGV[2] < seq <= ARGV[3] (a chunk: one call never holds Redis for
// long, whatever the backlog): each in exactly one state set, that set the one its record names, in the id
// index, and found from each parent still held (the dependency index). Returns the count and bytes of each
// state as its records say, the highest seq seen, and the problems.
const VERIFY_LUA = `
local problems, counted, bytes, seen, maxSeq = {}, {}, {}, {}, 0
local function problem(msg) problems[#problems + 1] = msg end
for _, st in ipairs(STATES) do counted[st] = 0; bytes[st] = 0 end
for _, st in ipairs(STATES) do
  for _, seq in ipairs(redis.call('ZRANGEBYSCORE', setKey(st), '(' .. ARGV[2], ARGV[3])) do
    local rec = redis.call('HMGET', txKey(seq), 'state', 'transaction_id', 'bytes', 'depends_on')
    if seen[seq] then problem('seq ' .. seq .. ' is in both the ' .. seen[seq] .. ' and the ' .. st .. ' set')
    elseif not rec[1] then problem('seq ' .. seq .. ' is in the ' .. st .. ' set but has no record')
    else
      seen[seq] = st
      maxSeq = math.max(maxSeq, tonumber(seq))
      if rec[1] ~= st then problem('seq ' .. seq .. ' is in the ' .. st .. ' set but its record says ' .. rec[1]) end
      if counted[rec[1]] then
        counted[rec[1]] = counted[rec[1]] + 1
        bytes[rec[1]] = bytes[rec[1]] + (tonumber(rec[3]) or 0)
      end
      if redis.call('HGET', K('ids'), rec[2]) ~= seq then
        problem('transaction ' .. tostring(rec[2]) .. ' (seq ' .. seq .. ') is missing from the id index')
      end
      -- The dependency index: what is not yet synced is found from each parent still held.
      if rec[4] and rec[4] ~= '[]' and st ~= 'synced' and st ~= 'discarded' then
        for _, d in ipairs(cjson.decode(rec[4])) do
          if not redis.call('ZSCORE', K('children:' .. d), seq) and redis.call('EXISTS', txKey(d)) == 1 then
            problem('dependency index: seq ' .. seq .. ' waits on ' .. d .. ' but is not among its children (a failure would not hold it back)')
          end
        end
      end
    end
  end
end
local c, b = {}, {}
for i, st in ipairs(STATES) do c[i] = counted[st]; b[i] = bytes[st] end
return {c, b, maxSeq, problems}
`;

// ID_INDEX (read): of the id → seq pairs in ARGV[2..] (flat, as a scan of the index found them), those the
// index still holds whose seq holds no record of that id.
const ID_INDEX_LUA = `
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('HGET', K('ids'), ARGV[i]) == ARGV[i + 1] and redis.call('HGET', txKey(ARGV[i + 1]), 'transaction_id') ~= ARGV[i] then
    out[#out + 1] = ARGV[i]; out[#out + 1] = ARGV[i + 1]
  end
end
return out
`;

// UNINDEXED (read): of the seqs in ARGV[2..], those with a record missing from the set its state names.
const UNINDEXED_LUA = `
local out = {}
for i = 2, #ARGV do
  local st = field(ARGV[i], 'state')
  if st and not redis.call('ZSCORE', setKey(st), ARGV[i]) then out[#out + 1] = ARGV[i] end
end
return out
`;

// INDEX_DEPS: the dependency index for seqs ARGV[2]+1 … ARGV[2]+ARGV[3] (a chunk, so one call never holds
// Redis for long), which a build from before the index appended: a buffer it made, or one it was
// downgraded to and wrote. Only transactions not yet synced need it. deps_through, the last seq up to
// which every seq is indexed, moves on with each chunk (and with each append of this build). Returns the
// last seq looked at.
const INDEX_DEPS_LUA = `
local from, n = tonumber(ARGV[2]), tonumber(ARGV[3])
local last = math.min(from + n, tonumber(redis.call('GET', K('seq')) or '0'))
for seq = from + 1, last do
  local v = redis.call('HMGET', txKey(seq), 'state', 'depends_on')
  if v[1] and v[1] ~= 'synced' and v[2] then indexChild(seq, v[2]) end
end
local through = tonumber(redis.call('GET', K('deps_through')) or '0')
if through >= from and last > through then redis.call('SET', K('deps_through'), last) end
return last
`;

/**
 * A script that may change what verify recounts: run as a function, then the epoch is bumped once if it
 * did (MOVED). Verify compares the epoch before and after its chunks: counts alone can come back to the
 * same values (a claim, then a retry) while the chunks were read at different moments.
 */
const mutating = (lua: string) => `local function body()
${lua}
end
local r = body()
if MOVED then redis.call('INCR', K('epoch')) end
return r
`;

export const SCRIPTS = {
  append: mutating(APPEND_LUA), claim: mutating(CLAIM_LUA), settle: mutating(SETTLE_LUA), release: mutating(RELEASE_LUA),
  retry: mutating(RETRY_LUA), retryAll: mutating(RETRY_ALL_LUA), discard: mutating(DISCARD_LUA), skipTo: SKIP_TO_LUA,
  compact: mutating(COMPACT_LUA), failSynced: mutating(FAIL_SYNCED_LUA), childrenOf: mutating(CHILDREN_OF_LUA), replayable: REPLAYABLE_LUA, dropKept: DROP_KEPT_LUA, get: GET_LUA, list: LIST_LUA,
  states: STATES_LUA, stats: STATS_LUA, verify: VERIFY_LUA, idIndex: ID_INDEX_LUA, unindexed: UNINDEXED_LUA, indexDeps: INDEX_DEPS_LUA,
};
export type ScriptName = keyof typeof SCRIPTS;
