/* The Lua scripts that make every append and every query one atomic step in Redis, and the
 * key names they work on. All keys of a channel carry the room as hash tag, so one script
 * touches one Redis Cluster slot. README.md explains the layout. */
#include <stdio.h>
#include <string.h>

#include "sredis.h"

/* Both scripts start by settling the channel's epoch and counter. ARGV[1] is a fresh
 * candidate epoch, ARGV[2] the ttl in ms (0: none), ARGV[3] max_history, ARGV[4] the time in
 * microseconds. KEYS are stream, counter, epoch.
 *
 * A channel whose stream is gone after offsets were handed out (deleted, expired, or its
 * counter lost) has lost its history: it gets a new epoch and its offsets start again at 1,
 * so a client holding an old offset is told it cannot recover. A channel asked about before
 * its first message keeps the epoch the question gave it (counter "0"). */
#define LUA_SETTLE                                                                                 \
    "local function settle()\n"                                                                    \
    "  local stream, seqk, epk = KEYS[1], KEYS[2], KEYS[3]\n"                                      \
    "  local cand, ttl = ARGV[1], tonumber(ARGV[2])\n"                                             \
    "  local epoch = redis.call('GET', epk)\n"                                                     \
    "  local seq = redis.call('GET', seqk)\n"                                                      \
    "  if redis.call('EXISTS', stream) == 1 then\n"                                                \
    "    if not seq then\n"                                                                        \
    "      local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)\n"                   \
    "      seq = last[1] and string.match(last[1][1], '^(%d+)') or '0'\n"                          \
    "      redis.call('SET', seqk, seq)\n"                                                         \
    "    end\n"                                                                                    \
    "    if not epoch then\n"                                                                      \
    "      epoch = cand\n"                                                                         \
    "      redis.call('SET', epk, epoch)\n"                                                        \
    "    end\n"                                                                                    \
    "    return epoch, tonumber(seq)\n"                                                            \
    "  end\n"                                                                                      \
    "  if epoch and seq == '0' then\n"                                                             \
    "    return epoch, 0\n"                                                                        \
    "  end\n"                                                                                      \
    "  local keep = ttl > 0 and ttl or 86400000\n"                                                 \
    "  redis.call('SET', epk, cand, 'PX', keep)\n"                                                 \
    "  redis.call('SET', seqk, '0', 'PX', keep)\n"                                                 \
    "  return cand, 0\n"                                                                           \
    "end\n"

/* Append. KEYS[4] is the message id's dedupe key. ARGV[5] the envelope, ARGV[6] stored_us,
 * ARGV[7] the envelope's timestamp_us, ARGV[8] the message id, ARGV[9] the dedupe window in
 * ms. Returns {offset, epoch, duplicate}.
 *
 * The dedupe key remembers "<offset> <epoch> <sha1 of the envelope>": the same id with the
 * same envelope in the same epoch is a retry (a replay after a connection dropped before the
 * reply came) and gets the offset it got the first time; anything else is a new message. */
const char lua__append_src[] = LUA_SETTLE
    "local epoch, seq = settle()\n"
    "local sha = redis.sha1hex(ARGV[5])\n"
    "local prev = redis.call('GET', KEYS[4])\n"
    "if prev then\n"
    "  local off, ep, h = string.match(prev, '^(%d+) (%S+) (%x+)$')\n"
    "  if off and ep == epoch and h == sha and tonumber(off) <= seq then\n"
    "    return {tonumber(off), epoch, 1}\n"
    "  end\n"
    "end\n"
    "seq = redis.call('INCR', KEYS[2])\n"
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], string.format('%d-1', seq),\n"
    "           'i', ARGV[8], 'j', ARGV[5], 't', ARGV[6], 'ts', ARGV[7])\n"
    "redis.call('SET', KEYS[4], string.format('%d %s %s', seq, epoch, sha), 'PX', ARGV[9])\n"
    "local ttl = tonumber(ARGV[2])\n"
    "for i = 1, 3 do\n"
    "  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) "
    "end\n"
    "end\n"
    "return {seq, epoch, 0}\n";

/* Query. ARGV[5] "1" to recover, ARGV[6] since_offset, ARGV[7] "" without an epoch or "="
 * followed by it, ARGV[8] limit, ARGV[9] since_us, ARGV[10] until_us (0: unbounded). Returns
 * {epoch, recovered, then per message: offset, stored_us, timestamp_us, id, envelope}.
 *
 * The history is the newest max_history offsets, less those older than the ttl, whatever
 * Redis still holds beyond that (MAXLEN ~ trims approximately): the same window as the memory
 * backend's, so both answer alike. */
const char lua__query_src[] = LUA_SETTLE
    "local epoch, seq = settle()\n"
    "local ttl, maxh, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local since_off, want = tonumber(ARGV[6]), ARGV[7]\n"
    "local limit, since_us, until_us = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])\n"
    "local floor = math.max(seq - maxh, 0)\n"
    "local cutoff = ttl > 0 and now - ttl * 1000 or 0\n"
    "local out = {epoch, 0}\n"
    "local function offset(e) return tonumber(string.match(e[1], '^(%d+)')) end\n"
    "local function fields(e)\n"
    "  local f = {}\n"
    "  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end\n"
    "  return f\n"
    "end\n"
    "local function push(e, f)\n"
    "  out[#out + 1] = offset(e)\n"
    "  out[#out + 1] = f.t or '0'\n"
    "  out[#out + 1] = f.ts or '0'\n"
    "  out[#out + 1] = f.i or ''\n"
    "  out[#out + 1] = f.j or ''\n"
    "end\n"
    "local epoch_ok = (want == '' and since_off == 0) or want == '=' .. epoch\n"
    "if ARGV[5] == '1' and epoch_ok and since_off >= floor and since_off <= seq then\n"
    "  if since_off == seq then\n"
    "    out[2] = 1\n"
    "    return out\n"
    "  end\n"
    "  local r = redis.call('XRANGE', KEYS[1], string.format('%d', since_off + 1), '+',\n"
    "                       'COUNT', limit)\n"
    "  if r[1] and offset(r[1]) == since_off + 1 and\n"
    "     (tonumber(fields(r[1]).t) or 0) >= cutoff then\n"
    "    out[2] = 1\n"
    "    for _, e in ipairs(r) do push(e, fields(e)) end\n"
    "    return out\n"
    "  end\n"
    "end\n"
    "local picked = {}\n"
    "local page = limit\n"
    "if since_us > 0 or until_us > 0 or cutoff > 0 then page = 512 end\n"
    "local hi = '+'\n"
    "while #picked < limit do\n"
    "  local r = redis.call('XREVRANGE', KEYS[1], hi, '-', 'COUNT', page)\n"
    "  local done = #r < page\n"
    "  for _, e in ipairs(r) do\n"
    "    local off = offset(e)\n"
    "    if off <= floor then done = true break end\n"
    "    local f = fields(e)\n"
    "    local t = tonumber(f.t) or 0\n"
    "    if t >= cutoff and (since_us == 0 or t >= since_us) and\n"
    "       (until_us == 0 or t <= until_us) then\n"
    "      picked[#picked + 1] = {e, f}\n"
    "      if #picked == limit then break end\n"
    "    end\n"
    "  end\n"
    "  if done or #picked == limit then break end\n"
    "  local last = offset(r[#r])\n"
    "  if last <= 1 then break end\n"
    "  hi = string.format('%d', last - 1)\n"
    "end\n"
    "for i = #picked, 1, -1 do push(picked[i][1], picked[i][2]) end\n"
    "return out\n";

int keys__build(char *out, size_t size, const char *prefix, const char *room, const char *channel,
                const char *suffix, const char *id)
{
    int n = snprintf(out, size, "%s:{%s}:%s%s%s", prefix, room, channel ? channel : "*room*",
                     suffix ? suffix : "", id ? id : "");
    return n < 0 || (size_t)n >= size ? -1 : n;
}
