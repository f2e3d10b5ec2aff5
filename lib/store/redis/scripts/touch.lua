-- Atomic touch of one affinity pin (create / refresh / switch), run by the
-- Redis store with EVALSHA. Redis runs a script atomically, which is what
-- makes touch safe between gateway processes (Aether's GET+SET races).
--
-- KEYS[1] storage key; ARGV:
--   1 head: the value up to and including `"created_at": ` in Python
--     json.dumps layout (provider_id, endpoint_id, key_id, api_format,
--     model_name, created_at), rendered by the C side;
--   2 now (repr text, also a new pin's created_at);
--   3 mid: `, "expire_at": E, "request_count": `;
--   4 ttl seconds (0 = no expiry);
--   5-7 provider_id, endpoint_id, key_id (slow path only);
--   8 count delta: how many touches this call applies (1, or a deferred
--     flush's sum; at most 10^15);
--   9 (with KEYS[2]) the batch's sequence number: KEYS[2] is this handle's
--     at-most-once key for the pin. A batch already applied (its number is
--     there: an earlier call that timed out on the client ran after all)
--     returns 0 and writes nothing.
-- A new pin's value is head .. now .. mid .. delta .. '}'.
-- Returns 1 (created), 3 (switched to another endpoint or key of the same
-- provider) or 4 (switched to another provider) as an integer, or for a refresh the
-- string "COUNT CREATED_AT" (new request_count, created_at text kept): one
-- bulk reply costs Redis less than a table.
--
-- Fast path (every value this library or Aether writes for this very pin):
-- the value starts with the head byte for byte, then the three numbers in
-- one anchored match; no unanchored pattern, no decode, and for counts
-- below 10^15 no closure either (measured with callgrind on redis-server
-- 7.0: ~86k instructions per refresh, against ~55k for a bare GET + SET EX
-- script and ~13k for a native SET EX; the previous script took ~182k). Anything else goes
-- through cjson.decode. A refresh keeps created_at's text exactly as the
-- previous writer wrote it. Counts are added as decimal text, so they stay
-- exact beyond 2^53 and saturate at INT64_MAX like the memory store.
if KEYS[2] and redis.call('SET', KEYS[2], ARGV[9], 'EX', 600, 'GET') == ARGV[9] then
  return 0
end
local h, mid = ARGV[1], ARGV[3]
local raw = redis.pcall('GET', KEYS[1])
-- Fast path, inline: no closure, one plain find, one anchored match.
if type(raw) == 'string' and string.find(raw, h, 1, true) == 1 then
  local c, e, n = string.match(raw,
    '^(%-?%d[%d.eE+-]*), "expire_at": (%-?%d[%d.eE+-]*), "request_count": (%d+)}$', #h + 1)
  local inf, cn = math.huge, c and tonumber(c)
  e = e and tonumber(e)
  if e and cn and #n < 16 and e ~= inf and cn ~= inf and cn ~= -inf then
    if e > tonumber(ARGV[2]) then
      n = string.format('%d', n + ARGV[8])
      if ARGV[4] ~= '0' then
        redis.call('SET', KEYS[1], h .. c .. mid .. n .. '}', 'EX', ARGV[4])
      else
        redis.call('SET', KEYS[1], h .. c .. mid .. n .. '}')
      end
      return n .. ' ' .. c
    end
  end
end
local MAX = '9223372036854775807'
local function add(n, d)
  if #n > 19 then return MAX end
  local s
  if #n < 16 then
    s = string.format('%d', tonumber(n) + d)
  else
    local hi, lo = tonumber(string.sub(n, 1, -10)), tonumber(string.sub(n, -9)) + d
    s = string.format('%d%09d', hi + math.floor(lo / 1e9), lo % 1e9)
  end
  if #s > 19 or (#s == 19 and s > MAX) then return MAX end
  return s
end
local function finite(v)
  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge
end
local d = tonumber(ARGV[8])
local function put(val)
  if ARGV[4] ~= '0' then
    redis.call('SET', KEYS[1], val, 'EX', ARGV[4])
  else
    redis.call('SET', KEYS[1], val)
  end
end
local function refresh(created, cnt)
  cnt = add(cnt, d)
  put(h .. created .. mid .. cnt .. '}')
  return cnt .. ' ' .. created
end
local function fresh(outcome)
  put(h .. ARGV[2] .. mid .. ARGV[8] .. '}')
  return outcome
end
local now = tonumber(ARGV[2])
if type(raw) ~= 'string' then return fresh(1) end
if string.find(raw, h, 1, true) == 1 then
  local c, e, n = string.match(raw,
    '^(-?%d[%d.eE+-]*), "expire_at": (-?%d[%d.eE+-]*), "request_count": (%d+)}$', #h + 1)
  e = e and tonumber(e)
  if finite(e) and finite(tonumber(c)) and (#n == 1 or string.byte(n) ~= 48) then
    if e > now then return refresh(c, n) end
    return fresh(1)
  end
end
local ok, v = pcall(cjson.decode, raw)
if ok and type(v) == 'table' and type(v.provider_id) == 'string'
   and type(v.endpoint_id) == 'string' and type(v.key_id) == 'string'
   and finite(v.expire_at) and v.expire_at > now then
  if v.provider_id ~= ARGV[5] then return fresh(4) end
  if v.endpoint_id ~= ARGV[6] or v.key_id ~= ARGV[7] then
    return fresh(3)
  end
  local created = string.match(raw, '"created_at": *(-?[%d.eE+-]+)')
  if not (created and tonumber(created) == v.created_at) then
    created = nil
    if finite(v.created_at) then
      for p = 15, 17 do -- repr(): the shortest text that reads back
        created = string.format('%.' .. p .. 'g', v.created_at)
        if tonumber(created) == v.created_at then break end
      end
      if not string.find(created, '[%.eEn]') then created = created .. '.0' end
    end
  end
  if created then
    local rc = v.request_count
    local cnt = string.match(raw, '"request_count": *(%d+)%s*[,}]')
    if not (cnt and tonumber(cnt) == rc and (#cnt == 1 or string.byte(cnt) ~= 48)) then
      if not finite(rc) or rc < 0 then
        cnt = '0'
      elseif rc >= 9.2233720368547758e18 then
        cnt = MAX
      else
        cnt = string.format('%.0f', math.floor(rc))
      end
    end
    return refresh(created, cnt)
  end
end
return fresh(1)
