/* Lua scripts of the Redis store (lib/store/redis.c). Redis runs a script
 * atomically, which is what makes touch and compare-and-delete safe between
 * gateway processes (affinity.md asks for it; Aether's GET+SET races). */
#ifndef ACACHE_STORE_REDIS_SCRIPTS_H
#define ACACHE_STORE_REDIS_SCRIPTS_H

/* KEYS[1] storage key; ARGV: provider_id, endpoint_id, key_id, api_format,
 * model_name, now (%.17g), ttl seconds.
 * Returns {outcome (1 created, 2 refreshed, 3 switched), created_at,
 * expire_at (both as written), request_count}.
 *
 * The value is written as Python's json.dumps writes Aether's dict: same key
 * order, ", " and ": " separators, floats as repr() (shortest digits that
 * read back, 15..17 significant digits, ".0" when integral), request_count
 * as an integer. cjson escapes '/' as "\/", which Python does not: undone
 * below (cjson always escapes '/', so "\/" never follows an escaped '\').
 * Non-ASCII stays UTF-8, as the core's renderer writes it. */
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
    "local function str(s)\n"                                                           \
    "  return (string.gsub(cjson.encode(s), '\\\\/', '/'))\n"                           \
    "end\n"                                                                             \
    "local function finite(v)\n"                                                        \
    "  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge\n" \
    "end\n"                                                                             \
    "local now = tonumber(ARGV[6])\n"                                                   \
    "local ttl = tonumber(ARGV[7])\n"                                                   \
    "local outcome, created, count = 1, now, 1\n"                                       \
    "local raw = redis.pcall('GET', KEYS[1])\n"                                         \
    "if type(raw) == 'string' then\n"                                                   \
    "  local ok, v = pcall(cjson.decode, raw)\n"                                        \
    "  if ok and type(v) == 'table' and type(v.provider_id) == 'string'\n"              \
    "     and type(v.endpoint_id) == 'string' and type(v.key_id) == 'string'\n"         \
    "     and finite(v.expire_at) and v.expire_at > now then\n"                         \
    "    if v.provider_id == ARGV[1] and v.endpoint_id == ARGV[2]\n"                    \
    "       and v.key_id == ARGV[3] then\n"                                             \
    "      outcome = 2\n"                                                               \
    "      if finite(v.created_at) then created = v.created_at end\n"                   \
    "      local rc = v.request_count\n"                                                \
    "      if not finite(rc) or rc < 0 then rc = 0 end\n"                               \
    "      count = math.floor(rc) + 1\n"                                                \
    "    else\n"                                                                        \
    "      outcome = 3\n"                                                               \
    "    end\n"                                                                         \
    "  end\n"                                                                           \
    "end\n"                                                                             \
    "local cs, es = num(created), num(now + ttl)\n"                                     \
    "local cnt = string.format('%d', count)\n"                                          \
    "local val = '{\"provider_id\": ' .. str(ARGV[1]) ..\n"                             \
    "  ', \"endpoint_id\": ' .. str(ARGV[2]) ..\n"                                      \
    "  ', \"key_id\": ' .. str(ARGV[3]) ..\n"                                           \
    "  ', \"api_format\": ' .. str(ARGV[4]) ..\n"                                       \
    "  ', \"model_name\": ' .. str(ARGV[5]) ..\n"                                       \
    "  ', \"created_at\": ' .. cs .. ', \"expire_at\": ' .. es ..\n"                    \
    "  ', \"request_count\": ' .. cnt .. '}'\n"                                         \
    "if ttl > 0 then\n"                                                                 \
    "  redis.call('SET', KEYS[1], val, 'EX', ttl)\n"                                    \
    "else\n"                                                                            \
    "  redis.call('SET', KEYS[1], val)\n"                                               \
    "end\n"                                                                             \
    "return {outcome, cs, es, cnt}\n"

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
