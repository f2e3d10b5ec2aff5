-- Atomic touch of one affinity pin (create / refresh / switch), run by the
-- Redis store with EVALSHA. Redis runs a script atomically, which is what
-- makes touch safe between gateway processes (Aether's GET+SET races).
--
-- KEYS[1] storage key; ARGV: provider_id, endpoint_id, key_id (to compare),
-- now (%.17g), ttl seconds, the value for a new pin (complete), the head of
-- a refreshed value (up to and including `"created_at": `), its tail after
-- created_at (`, "expire_at": E, "request_count": `), and the canonical
-- start of a value pinned to this provider/endpoint/key
-- (`{"provider_id": P, "endpoint_id": E, "key_id": K, `).
-- Returns {outcome (1 created, 2 refreshed, 3 switched), created_at text,
-- request_count text}.
--
-- The C side renders every byte it can (Python json.dumps layout: key order,
-- ", " and ": " separators, repr() floats), so the script only decides and
-- concatenates. Fast path: a value starting with ARGV[9] was written in that
-- layout for this very pin, so its numbers are read with anchored patterns
-- instead of a full decode (inside a JSON string every quote is escaped, so
-- `"name": ` cannot match there). Anything else goes through cjson.decode.
-- A refresh keeps created_at's text exactly as the previous writer wrote it.
local function num(v)
  local s
  for p = 15, 17 do
    s = string.format('%.' .. p .. 'g', v)
    if tonumber(s) == v then break end
  end
  if not string.find(s, '[%.eEn]') then s = s .. '.0' end
  return s
end
local function finite(v)
  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge
end
local function put(val, ttl)
  if ttl > 0 then
    redis.call('SET', KEYS[1], val, 'EX', ttl)
  else
    redis.call('SET', KEYS[1], val)
  end
end
local function refresh(created, rc, ttl)
  if not finite(rc) or rc < 0 then rc = 0 end
  local cnt = string.format('%d', math.floor(rc) + 1)
  put(ARGV[7] .. created .. ARGV[8] .. cnt .. '}', ttl)
  return {2, created, cnt}
end
local now = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local raw = redis.pcall('GET', KEYS[1])
if type(raw) == 'string' then
  local p3 = ARGV[9]
  if string.sub(raw, 1, #p3) == p3 then
    local e = tonumber(string.match(raw, '"expire_at": (-?[%d.eE+-]+)'))
    local c = string.match(raw, '"created_at": (-?[%d.eE+-]+)')
    local n = tonumber(string.match(raw, '"request_count": (%d+)[,}]'))
    if finite(e) and c and finite(tonumber(c)) and n then
      if e > now then return refresh(c, n, ttl) end
      put(ARGV[6], ttl)
      return {1, '', '1'}
    end
  end
  local ok, v = pcall(cjson.decode, raw)
  if ok and type(v) == 'table' and type(v.provider_id) == 'string'
     and type(v.endpoint_id) == 'string' and type(v.key_id) == 'string'
     and finite(v.expire_at) and v.expire_at > now then
    if v.provider_id == ARGV[1] and v.endpoint_id == ARGV[2]
       and v.key_id == ARGV[3] then
      local created = string.match(raw, '"created_at": *(-?[%d.eE+-]+)')
      if not (created and tonumber(created) == v.created_at) then
        created = finite(v.created_at) and num(v.created_at) or nil
      end
      if created then return refresh(created, v.request_count, ttl) end
    else
      put(ARGV[6], ttl)
      return {3, '', '1'}
    end
  end
end
put(ARGV[6], ttl)
return {1, '', '1'}
