/* Lua scripts of the Redis store (lib/store/redis.c). Redis runs a script
 * atomically, which is what makes touch and compare-and-delete safe between
 * gateway processes (affinity.md asks for it; Aether's GET+SET races). */
#ifndef ACACHE_STORE_REDIS_SCRIPTS_H
#define ACACHE_STORE_REDIS_SCRIPTS_H

/* KEYS[1] storage key; ARGV: provider_id, endpoint_id, key_id (to compare),
 * now (%.17g), ttl seconds, the value for a new pin (complete), the head of
 * a refreshed value (up to and including `"created_at": `), its tail after
 * created_at (`, "expire_at": E, "request_count": `), and the canonical
 * start of a value pinned to this provider/endpoint/key
 * (`{"provider_id": P, "endpoint_id": E, "key_id": K, `).
 * Returns {outcome (1 created, 2 refreshed, 3 switched), created_at text,
 * request_count text}.
 *
 * The C side renders every byte it can (Python json.dumps layout: key order,
 * ", " and ": " separators, repr() floats), so the script only decides and
 * concatenates. Fast path: a value starting with ARGV[9] was written in that
 * layout for this very pin, so its numbers are read with anchored patterns
 * instead of a full decode (inside a JSON string every quote is escaped, so
 * `"name": ` cannot match there). Anything else goes through cjson.decode.
 * A refresh keeps created_at's text exactly as the previous writer wrote it. */
#define ACACHE_REDIS_TOUCH_LUA                                                          \
    "local function num(v)\n"                                                           \
    "  local s\n"                                                                       \
    "  for p = 15, 17 do\n"                                                             \
    "    s = string.format('%." "' .. p .. 'g', v)\n"                                   \
    "    if tonumber(s) == v then break end\n"                                          \
    "  end\n"                                                                           \
    "  if not string.find(s, '[%.eEn]') then s = s .. '.0' end\n"                       \
    "  return s\n"                                                                      \
    "end\n"                                                                             \
    "local function finite(v)\n"                                                        \
    "  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge\n" \
    "end\n"                                                                             \
    "local function put(val, ttl)\n"                                                    \
    "  if ttl > 0 then\n"                                                               \
    "    redis.call('SET', KEYS[1], val, 'EX', ttl)\n"                                  \
    "  else\n"                                                                          \
    "    redis.call('SET', KEYS[1], val)\n"                                             \
    "  end\n"                                                                           \
    "end\n"                                                                             \
    "local function refresh(created, rc, ttl)\n"                                        \
    "  if not finite(rc) or rc < 0 then rc = 0 end\n"                                   \
    "  local cnt = string.format('%d', math.floor(rc) + 1)\n"                           \
    "  put(ARGV[7] .. created .. ARGV[8] .. cnt .. '}', ttl)\n"                         \
    "  return {2, created, cnt}\n"                                                      \
    "end\n"                                                                             \
    "local now = tonumber(ARGV[4])\n"                                                   \
    "local ttl = tonumber(ARGV[5])\n"                                                   \
    "local raw = redis.pcall('GET', KEYS[1])\n"                                         \
    "if type(raw) == 'string' then\n"                                                   \
    "  local p3 = ARGV[9]\n"                                                            \
    "  if string.sub(raw, 1, #p3) == p3 then\n"                                         \
    "    local e = tonumber(string.match(raw, '\"expire_at\": (-?[%d.eE+-]+)'))\n"      \
    "    local c = string.match(raw, '\"created_at\": (-?[%d.eE+-]+)')\n"               \
    "    local n = tonumber(string.match(raw, '\"request_count\": (%d+)[,}]'))\n"       \
    "    if finite(e) and c and finite(tonumber(c)) and n then\n"                       \
    "      if e > now then return refresh(c, n, ttl) end\n"                             \
    "      put(ARGV[6], ttl)\n"                                                         \
    "      return {1, '', '1'}\n"                                                       \
    "    end\n"                                                                         \
    "  end\n"                                                                           \
    "  local ok, v = pcall(cjson.decode, raw)\n"                                        \
    "  if ok and type(v) == 'table' and type(v.provider_id) == 'string'\n"              \
    "     and type(v.endpoint_id) == 'string' and type(v.key_id) == 'string'\n"         \
    "     and finite(v.expire_at) and v.expire_at > now then\n"                         \
    "    if v.provider_id == ARGV[1] and v.endpoint_id == ARGV[2]\n"                    \
    "       and v.key_id == ARGV[3] then\n"                                             \
    "      local created = string.match(raw, '\"created_at\": *(-?[%d.eE+-]+)')\n"       \
    "      if not (created and tonumber(created) == v.created_at) then\n"               \
    "        created = finite(v.created_at) and num(v.created_at) or nil\n"             \
    "      end\n"                                                                       \
    "      if created then return refresh(created, v.request_count, ttl) end\n"         \
    "    else\n"                                                                        \
    "      put(ARGV[6], ttl)\n"                                                         \
    "      return {3, '', '1'}\n"                                                       \
    "    end\n"                                                                         \
    "  end\n"                                                                           \
    "end\n"                                                                             \
    "put(ARGV[6], ttl)\n"                                                               \
    "return {1, '', '1'}\n"

/* KEYS: up to a batch of storage keys; ARGV: provider_id, endpoint_id, key_id
 * filters, each "" for "any" or "=" followed by the value (so that an empty
 * filter value stays distinguishable from "any"). At least one filter is
 * set (the all-NULL case is a plain UNLINK). A value that is missing, not a
 * string, or not a JSON object never matches. Returns how many went. */
#define ACACHE_REDIS_DELETE_IF_LUA                                                      \
    "local function want(a)\n"                                                          \
    "  if a == '' then return nil end\n"                                                \
    "  return string.sub(a, 2)\n"                                                       \
    "end\n"                                                                             \
    "local fp, fe, fk = want(ARGV[1]), want(ARGV[2]), want(ARGV[3])\n"                  \
    "local n = 0\n"                                                                     \
    "for i = 1, #KEYS do\n"                                                             \
    "  local raw = redis.pcall('GET', KEYS[i])\n"                                       \
    "  if type(raw) == 'string' then\n"                                                 \
    "    local ok, v = pcall(cjson.decode, raw)\n"                                      \
    "    if ok and type(v) == 'table'\n"                                                \
    "       and (fp == nil or v.provider_id == fp)\n"                                   \
    "       and (fe == nil or v.endpoint_id == fe)\n"                                   \
    "       and (fk == nil or v.key_id == fk) then\n"                                   \
    "      n = n + redis.call('UNLINK', KEYS[i])\n"                                     \
    "    end\n"                                                                         \
    "  end\n"                                                                           \
    "end\n"                                                                             \
    "return n\n"

#endif
