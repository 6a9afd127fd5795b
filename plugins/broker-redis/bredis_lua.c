/* The Lua scripts, loaded with SCRIPT LOAD on every command connection and run with EVALSHA.
 * ARGV[1] is always the prefix. Registry and presence entries hold "<incarnation> <node>"; a
 * node's liveness key "<prefix>:node:{<node>}" holds "<incarnation> <clients>" and expires
 * after node_ttl unless refreshed. An entry is live while that key exists with the same
 * incarnation: a dead node's entries (or those of its previous run) are ignored at once and
 * deleted when met. Keys are named inside the scripts, so this layout needs one server (or a
 * proxy) per shard, not a Redis Cluster. */
#include "bredis.h"

#define LUA_ALIVE                                                                                  \
    "local P = ARGV[1]\n"                                                                          \
    "local live = {}\n"                                                                            \
    "local function alive(v)\n"                                                                    \
    "  local r = live[v]\n"                                                                        \
    "  if r ~= nil then return r end\n"                                                            \
    "  r = false\n"                                                                                \
    "  local sp = string.find(v, ' ', 1, true)\n"                                                  \
    "  if sp then\n"                                                                               \
    "    local cur = redis.call('GET', P .. ':node:{' .. string.sub(v, sp + 1) .. '}')\n"          \
    "    if cur then\n"                                                                            \
    "      local sp2 = string.find(cur, ' ', 1, true)\n"                                           \
    "      r = sp2 ~= nil and string.sub(cur, 1, sp2 - 1) == string.sub(v, 1, sp - 1)\n"           \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  live[v] = r\n"                                                                              \
    "  return r\n"                                                                                 \
    "end\n"

/* KEYS: the members hash (room-wide or the channel's), the room-wide hash, the room's channel
 * set, the rooms set. ARGV: prefix, client, entry, joined (1/0), room, channel ("": none). */
static const char presence_src[] =
    "if ARGV[4] == '1' then\n"
    "  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])\n"
    "  if ARGV[6] ~= '' then redis.call('SADD', KEYS[3], ARGV[6]) end\n"
    "  redis.call('SADD', KEYS[4], ARGV[5])\n"
    "  return 1\n"
    "end\n"
    "if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[2])\n"
    "end\n"
    "if ARGV[6] ~= '' and redis.call('EXISTS', KEYS[1]) == 0 then\n"
    "  redis.call('SREM', KEYS[3], ARGV[6])\n"
    "end\n"
    "if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('SCARD', KEYS[3]) == 0 then\n"
    "  redis.call('SREM', KEYS[4], ARGV[5])\n"
    "end\n"
    "return 0\n";

/* KEYS: the clients hash. ARGV: prefix, client, entry. Only our own entry goes: a client id
 * that another node registered since stays that node's. */
static const char unregister_src[] = "if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then\n"
                                     "  return redis.call('HDEL', KEYS[1], ARGV[2])\n"
                                     "end\n"
                                     "return 0\n";

/* KEYS: the node's liveness key, the nodes set, the clients hash, the sweep cursor. ARGV:
 * prefix, node, "<incarnation> <clients>", node_ttl in ms. Refreshes the node, then removes
 * dead entries from one page of the registry (bounded work per beat). Returns 1 when the
 * liveness key still held this incarnation, 0 when it had expired (Redis lost it, or this node
 * stalled longer than node_ttl: its entries may have been swept, so it must register again). */
static const char heartbeat_src[] =
    LUA_ALIVE "local old = redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4], 'GET')\n"
              "redis.call('SADD', KEYS[2], ARGV[2])\n"
              "local cursor = redis.call('GET', KEYS[4]) or '0'\n"
              "local page = redis.call('HSCAN', KEYS[3], cursor, 'COUNT', 100)\n"
              "local kv = page[2]\n"
              "for i = 1, #kv, 2 do\n"
              "  if not alive(kv[i + 1]) then redis.call('HDEL', KEYS[3], kv[i]) end\n"
              "end\n"
              "if page[1] == '0' then redis.call('DEL', KEYS[4])\n"
              "else redis.call('SET', KEYS[4], page[1]) end\n"
              "if not old then return 0 end\n"
              "local sp = string.find(old, ' ', 1, true)\n"
              "local sp3 = string.find(ARGV[3], ' ', 1, true)\n"
              "if sp and string.sub(old, 1, sp) == string.sub(ARGV[3], 1, sp3) then return 1 end\n"
              "return 0\n";

/* KEYS: the clients hash. ARGV: prefix, client, payload, "SPUBLISH" or "PUBLISH". Publishes
 * to the node holding the client: 1, or 0 when no live node holds it. */
static const char direct_src[] =
    LUA_ALIVE "local v = redis.call('HGET', KEYS[1], ARGV[2])\n"
              "if not v then return 0 end\n"
              "if not alive(v) then\n"
              "  redis.call('HDEL', KEYS[1], ARGV[2])\n"
              "  return 0\n"
              "end\n"
              "local sp = string.find(v, ' ', 1, true)\n"
              "redis.call(ARGV[4], P .. ':node:{' .. string.sub(v, sp + 1) .. '}', ARGV[3])\n"
              "return 1\n";

/* No KEYS. ARGV: prefix, what, room (client id for "client"), channel ("": none).
 *   rooms     {room, members, channels, ...} of the rooms this shard holds
 *   channels  {channel, members, ...} of a room
 *   members   {client, ...} of a room (room-wide) or channel
 *   nodes     {node, clients, ...} of the live nodes
 *   client    the node holding a client, or nil
 * Dead entries met are deleted, and so are empty channels and rooms from their sets. */
static const char query_src[] =
    LUA_ALIVE "local function members(key)\n"
              "  local out = {}\n"
              "  local kv = redis.call('HGETALL', key)\n"
              "  for i = 1, #kv, 2 do\n"
              "    if alive(kv[i + 1]) then out[#out + 1] = kv[i]\n"
              "    else redis.call('HDEL', key, kv[i]) end\n"
              "  end\n"
              "  return out\n"
              "end\n"
              "local function rkey(room, suffix) return P .. ':{' .. room .. '}#' .. suffix end\n"
              "local function channels(room)\n"
              "  local out = {}\n"
              "  local set = rkey(room, 'channels')\n"
              "  for _, ch in ipairs(redis.call('SMEMBERS', set)) do\n"
              "    local n = #members(rkey(room, 'members:' .. ch))\n"
              "    if n > 0 then out[#out + 1] = ch; out[#out + 1] = n\n"
              "    else redis.call('SREM', set, ch) end\n"
              "  end\n"
              "  return out\n"
              "end\n"
              "local what = ARGV[2]\n"
              "if what == 'rooms' then\n"
              "  local out = {}\n"
              "  local set = P .. '#rooms'\n"
              "  for _, room in ipairs(redis.call('SMEMBERS', set)) do\n"
              "    local m = #members(rkey(room, 'members'))\n"
              "    local ch = channels(room)\n"
              "    for i = 2, #ch, 2 do m = m + ch[i] end\n"
              "    if m > 0 then\n"
              "      out[#out + 1] = room; out[#out + 1] = m; out[#out + 1] = #ch / 2\n"
              "    else redis.call('SREM', set, room) end\n"
              "  end\n"
              "  return out\n"
              "elseif what == 'channels' then\n"
              "  return channels(ARGV[3])\n"
              "elseif what == 'members' then\n"
              "  if ARGV[4] == '' then return members(rkey(ARGV[3], 'members')) end\n"
              "  return members(rkey(ARGV[3], 'members:' .. ARGV[4]))\n"
              "elseif what == 'nodes' then\n"
              "  local out = {}\n"
              "  local set = P .. '#nodes'\n"
              "  for _, node in ipairs(redis.call('SMEMBERS', set)) do\n"
              "    local cur = redis.call('GET', P .. ':node:{' .. node .. '}')\n"
              "    if cur then\n"
              "      local sp = string.find(cur, ' ', 1, true)\n"
              "      out[#out + 1] = node; out[#out + 1] = tonumber(string.sub(cur, sp + 1)) or 0\n"
              "    else redis.call('SREM', set, node) end\n"
              "  end\n"
              "  return out\n"
              "elseif what == 'client' then\n"
              "  local key = P .. '#clients'\n"
              "  local v = redis.call('HGET', key, ARGV[3])\n"
              "  if v and alive(v) then\n"
              "    local sp = string.find(v, ' ', 1, true)\n"
              "    return string.sub(v, sp + 1)\n"
              "  end\n"
              "  if v then redis.call('HDEL', key, ARGV[3]) end\n"
              "  return false\n"
              "end\n"
              "return redis.error_reply('unknown query ' .. what)\n";

const char *const lua__src[BR_LUA_COUNT] = {[BR_LUA_PRESENCE] = presence_src,
                                            [BR_LUA_UNREGISTER] = unregister_src,
                                            [BR_LUA_HEARTBEAT] = heartbeat_src,
                                            [BR_LUA_DIRECT] = direct_src,
                                            [BR_LUA_QUERY] = query_src};
