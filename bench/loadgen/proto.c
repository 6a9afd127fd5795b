/* The three protocols spoken over the WebSocket:
 *   arqonbus  the envelope of docs/protocol.md: join_channel commands, then
 *             {"type":"message","room":..,"channel":..,"payload":{..}}; text frames.
 *   mqtt      MQTT 3.1.1 over WebSocket (subprotocol "mqtt"): CONNECT/CONNACK,
 *             SUBSCRIBE/SUBACK, PUBLISH QoS 0, PINGREQ; topic room/channel; binary frames,
 *             read as one byte stream.
 *   raw       the payload object alone, for the relay; the channel is the URL path.
 * Every published payload is {"t":<CLOCK_MONOTONIC ns>,"s":<sender>,"w":<0|1>,"pad":"x.."}:
 * "w" marks the messages sent while measuring, so that lost deliveries are counted exactly. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loadgen.h"

#define MAX_PAYLOAD 65536

static const char *const MQTT_NAMES[] = {"?",         "CONNECT",  "CONNACK",     "PUBLISH",
                                         "PUBACK",    "PUBREC",   "PUBREL",      "PUBCOMP",
                                         "SUBSCRIBE", "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
                                         "PINGREQ",   "PINGRESP", "DISCONNECT",  "AUTH"};

/* The room and channel of c (MQTT topic room/channel; relay path /room/channel). */
static void conn_place(const struct lg_run *r, const struct lg_conn *c, char *room, char *chan)
{
    switch (r->o.scenario) {
    case SC_FANOUT:
    case SC_LATENCY:
        strcpy(room, "bench");
        strcpy(chan, "fanout");
        break;
    case SC_ROOMS:
        sprintf(room, "r%u", c->group);
        strcpy(chan, "c");
        break;
    case SC_CONNECTIONS:
        strcpy(room, "idle");
        sprintf(chan, "c%u", c->id % 100);
        break;
    case SC_COMMANDS:
        strcpy(room, "cmd");
        sprintf(chan, "c%u", c->id);
        break;
    }
}

/* ArqonBus publishers join too (bus.members_only); an MQTT publisher that subscribed would
 * get its own messages back (3.1.1 has no no-local), so only subscribers subscribe. */
static int needs_channel(const struct lg_run *r, const struct lg_conn *c)
{
    int roles = r->o.proto == PROTO_MQTT ? ROLE_SUB : ROLE_PUB | ROLE_SUB;
    return (c->role & roles) || (r->o.scenario == SC_CONNECTIONS && r->o.idle_join);
}

int proto_upgrade_request(const struct lg_run *r, const struct lg_conn *c, char *buf, size_t size,
                          uint64_t *prng)
{
    uint8_t key[16];
    for (int i = 0; i < 16; i++) {
        *prng ^= *prng << 13;
        *prng ^= *prng >> 7;
        *prng ^= *prng << 17;
        key[i] = (uint8_t)*prng;
    }
    char key64[32], path[128] = "/", room[32], chan[32];
    ws_base64(key, sizeof key, key64);
    if (r->o.proto == PROTO_RAW) {
        conn_place(r, c, room, chan);
        snprintf(path, sizeof path, "/%s/%s", room, chan);
    } else if (r->o.proto == PROTO_ARQONBUS && (c->role & ROLE_PUB) && !r->o.acks) {
        strcpy(path, "/?ack=0");
    }
    return snprintf(buf, size,
                    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                    "Sec-WebSocket-Version: 13\r\n%s\r\n",
                    path, r->o.host, conn_port(r, c), key64,
                    r->o.proto == PROTO_MQTT ? "Sec-WebSocket-Protocol: mqtt\r\n" : "");
}

/* {"t":..,"s":..,"w":..,"pad":"xx.."} of exactly payload_bytes (or the least possible). */
static size_t payload_object(const struct lg_run *r, char *out, uint64_t t, uint32_t s, int marked)
{
    int n = snprintf(out, 96, "{\"t\":%llu,\"s\":%u,\"w\":%d,\"pad\":\"", (unsigned long long)t, s,
                     marked);
    int pad = r->o.payload_bytes - n - 2;
    if (pad > 0) {
        memset(out + n, 'x', (size_t)pad);
        n += pad;
    }
    out[n++] = '"';
    out[n++] = '}';
    return (size_t)n;
}

static const char *parse_u64(const char *p, const char *end, uint64_t *v)
{
    uint64_t x = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9')
        x = x * 10 + (uint64_t)(*p++ - '0');
    *v = x;
    return p > s ? p : NULL;
}

/* The "t", "s" and "w" of a delivered payload; 0 when there is no "t". */
static int parse_delivery(const char *p, size_t len, uint64_t *t, uint32_t *s, int *marked)
{
    const char *end = p + len, *q = memmem(p, len, "\"t\":", 4);
    if (!q || !(q = parse_u64(q + 4, end, t)))
        return 0;
    uint64_t v = 0;
    if (end - q >= 5 && memcmp(q, ",\"s\":", 5) == 0)
        q += 5;
    else if ((q = memmem(q, (size_t)(end - q), "\"s\":", 4)) != NULL)
        q += 4;
    if (!q || !(q = parse_u64(q, end, &v)))
        return -1;
    *s = (uint32_t)v;
    if (end - q >= 5 && memcmp(q, ",\"w\":", 5) == 0)
        q += 5;
    else if ((q = memmem(q, (size_t)(end - q), "\"w\":", 4)) != NULL)
        q += 4;
    if (!q || q >= end)
        return -1;
    *marked = *q == '1';
    return 1;
}

static void on_delivery_payload(struct lg_worker *w, const char *p, size_t len)
{
    uint64_t t;
    uint32_t s = 0;
    int marked = 0;
    int rc = parse_delivery(p, len, &t, &s, &marked);
    if (rc > 0)
        traffic_delivery(w, t, s, marked);
    else
        w->st.bad_frames++;
}

static void setup_failed(struct lg_worker *w, struct lg_conn *c, const char *what, const char *data,
                         size_t len)
{
    if (w->st.setup_failed < 3)
        fprintf(stderr, "arqonbus-bench: client %u: %s: %.*s\n", c->id, what,
                (int)(len > 300 ? 300 : len), data);
    conn_fail(w, c, &w->st.setup_failed);
}

/* --- arqonbus ------------------------------------------------------------------------------- */

#define HAS(lit) (memmem(data, len, lit, sizeof lit - 1) != NULL)

static void arq_command(struct lg_worker *w, struct lg_conn *c, const char *cmd, int with_place)
{
    char room[32], chan[32], text[256];
    int n;
    if (with_place) {
        conn_place(w->run, c, room, chan);
        n = snprintf(text, sizeof text,
                     "{\"type\":\"command\",\"command\":\"%s\",\"args\":{\"room\":\"%s\","
                     "\"channel\":\"%s\"}}",
                     cmd, room, chan);
    } else {
        n = snprintf(text, sizeof text, "{\"type\":\"command\",\"command\":\"%s\"}", cmd);
    }
    conn_send_frame(w, c, 0x1, text, (size_t)n);
}

static void arq_setup(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
    if (HAS("\"type\":\"error\"")) {
        setup_failed(w, c, "error during setup", data, len);
        return;
    }
    if (c->cmd_step == 0) { /* the welcome */
        if (!HAS("\"welcome\""))
            return;
        if (!needs_channel(w->run, c)) {
            traffic_ready(w, c);
            return;
        }
        c->cmd_step = 1;
        arq_command(w, c, "join_channel", 1);
        return;
    }
    if (!HAS("\"type\":\"response\""))
        return; /* presence and the like */
    if (!HAS("\"status\":\"success\"")) {
        setup_failed(w, c, "join_channel refused", data, len);
        return;
    }
    c->cmd_step = 0;
    traffic_ready(w, c);
}

static void arq_message(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
    if (c->state == ST_SETUP) {
        arq_setup(w, c, data, len);
        return;
    }
    if (memmem(data, len, "\"t\":", 4)) {
        on_delivery_payload(w, data, len);
        return;
    }
    if (HAS("\"type\":\"error\"")) {
        if (w->st.error_frames++ < 3)
            fprintf(stderr, "arqonbus-bench: client %u got: %.*s\n", c->id,
                    (int)(len > 300 ? 300 : len), data);
        if (c->awaiting & AW_CMD)
            traffic_command_done(w, c, 0);
        return;
    }
    if ((c->awaiting & AW_CMD) && HAS("\"type\":\"response\"")) {
        traffic_command_done(w, c, HAS("\"status\":\"success\""));
        return;
    }
    const char *q = memmem(data, len, "\"request_id\":\"arq_", 18);
    if (q && HAS("\"message_response\"")) { /* an ack: the id carries the send time */
        uint64_t t;
        if (parse_u64(q + 18, data + len, &t) && w->phase == PH_MEASURE && w->now >= t) {
            hist_add(&w->ack, w->now - t);
            w->st.acks_win++;
        }
    }
}

static void arq_publish(struct lg_worker *w, struct lg_conn *c, uint64_t t, int marked)
{
    const struct lg_run *r = w->run;
    char *p = conn_frame_begin(w, c, (size_t)r->o.payload_bytes + 512);
    if (!p) {
        conn_fail(w, c, &w->st.closed);
        return;
    }
    char room[32], chan[32];
    conn_place(r, c, room, chan);
    int n;
    if (r->o.acks)
        n = sprintf(p, "{\"type\":\"message\",\"id\":\"arq_%llu_%llu_000000\",",
                    (unsigned long long)t, (unsigned long long)c->sent + 1);
    else
        n = sprintf(p, "{\"type\":\"message\",");
    n += sprintf(p + n, "\"room\":\"%s\",\"channel\":\"%s\",\"payload\":", room, chan);
    n += (int)payload_object(r, p + n, t, c->id, marked);
    p[n++] = '}';
    conn_frame_commit(w, c, 0x1, (size_t)n);
}

static void arq_next_command(struct lg_worker *w, struct lg_conn *c)
{
    if (w->run->o.command == CMD_PING) {
        arq_command(w, c, "ping", 0);
        return;
    }
    int leave = c->cmd_step & 1;
    c->cmd_step++;
    if (leave)
        c->awaiting |= AW_LEAVE;
    arq_command(w, c, leave ? "leave_channel" : "join_channel", 1);
}

/* --- mqtt ------------------------------------------------------------------------------------ */

static size_t mqtt_remlen(uint8_t *p, size_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v % 128;
        v /= 128;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static size_t mqtt_str(uint8_t *p, const char *s)
{
    size_t len = strlen(s);
    p[0] = (uint8_t)(len >> 8);
    p[1] = (uint8_t)len;
    memcpy(p + 2, s, len);
    return len + 2;
}

/* A packet of type byte `first` whose body is body[0..blen). */
static void mqtt_send(struct lg_worker *w, struct lg_conn *c, uint8_t first, const uint8_t *body,
                      size_t blen)
{
    uint8_t pkt[512];
    pkt[0] = first;
    size_t n = 1 + mqtt_remlen(pkt + 1, blen);
    if (blen)
        memcpy(pkt + n, body, blen);
    conn_send_frame(w, c, 0x2, pkt, n + blen);
}

static void mqtt_topic(const struct lg_run *r, const struct lg_conn *c, char *topic)
{
    char room[32], chan[32];
    conn_place(r, c, room, chan);
    sprintf(topic, "%s/%s", room, chan);
}

static void mqtt_subscribe(struct lg_worker *w, struct lg_conn *c, int unsubscribe, uint16_t pid)
{
    uint8_t body[128];
    char topic[72];
    mqtt_topic(w->run, c, topic);
    body[0] = (uint8_t)(pid >> 8);
    body[1] = (uint8_t)pid;
    size_t n = 2 + mqtt_str(body + 2, topic);
    if (!unsubscribe)
        body[n++] = 0; /* QoS 0 */
    mqtt_send(w, c, unsubscribe ? 0xA2 : 0x82, body, n);
}

static void mqtt_connect(struct lg_worker *w, struct lg_conn *c)
{
    uint8_t body[128];
    static const uint8_t head[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02 /* clean session */};
    memcpy(body, head, sizeof head);
    size_t n = sizeof head;
    int ka = w->run->o.keepalive_s;
    body[n++] = (uint8_t)(ka >> 8);
    body[n++] = (uint8_t)ka;
    char id[48];
    snprintf(id, sizeof id, "lg%d-%u", (int)getpid(), c->id);
    n += mqtt_str(body + n, id);
    mqtt_send(w, c, 0x10, body, n);
}

static void mqtt_packet(struct lg_worker *w, struct lg_conn *c, uint8_t first, const uint8_t *b,
                        size_t len)
{
    int type = first >> 4;
    if (type == 3) { /* PUBLISH */
        if (len < 2)
            return;
        size_t off = 2 + ((size_t)b[0] << 8 | b[1]);
        if ((first >> 1) & 3)
            off += 2; /* packet id: not with QoS 0, but harmless */
        if (off <= len)
            on_delivery_payload(w, (const char *)b + off, len - off);
        return;
    }
    if (c->state == ST_SETUP) {
        if (type == 2 && len >= 2 && b[1] == 0) { /* CONNACK accepted */
            if (needs_channel(w->run, c)) {
                c->cmd_step = 1;
                mqtt_subscribe(w, c, 0, 1);
            } else {
                traffic_ready(w, c);
            }
        } else if (type == 9 && c->cmd_step == 1) {
            if (len >= 3 && b[2] == 0x80)
                setup_failed(w, c, "SUBSCRIBE refused", "", 0);
            else {
                c->cmd_step = 0;
                traffic_ready(w, c);
            }
        } else {
            char what[64];
            snprintf(what, sizeof what, "unexpected %s during setup (return code %d)",
                     MQTT_NAMES[type], len >= 2 ? b[1] : -1);
            setup_failed(w, c, what, "", 0);
        }
        return;
    }
    if (c->awaiting & AW_CMD) {
        if (type == 13 || type == 11) {
            traffic_command_done(w, c, 1);
            return;
        }
        if (type == 9) {
            traffic_command_done(w, c, !(len >= 3 && b[2] == 0x80));
            return;
        }
    }
}

/* MQTT packets may straddle frames (and a frame may hold several): c->msg keeps the tail. */
static void mqtt_stream(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
    const uint8_t *p = (const uint8_t *)data;
    if (c->mlen) {
        size_t need = (size_t)c->mlen + len;
        if (need > c->mcap) {
            char *m = realloc(c->msg, need);
            if (!m) {
                conn_fail(w, c, &w->st.closed);
                return;
            }
            c->msg = m;
            c->mcap = (uint32_t)need;
        }
        memcpy(c->msg + c->mlen, data, len);
        p = (const uint8_t *)c->msg;
        len = need;
        c->mlen = 0;
    }
    size_t pos = 0;
    while (pos + 2 <= len && c->state != ST_CLOSED) {
        size_t rl = 0, i = 1;
        int mult = 0, complete = 0;
        while (pos + i < len && i <= 4) {
            uint8_t b = p[pos + i++];
            rl |= (size_t)(b & 0x7f) << (7 * mult++);
            if (!(b & 0x80)) {
                complete = 1;
                break;
            }
        }
        if (!complete || pos + i + rl > len)
            break;
        mqtt_packet(w, c, p[pos], p + pos + i, rl);
        pos += i + rl;
    }
    if (c->state == ST_CLOSED || pos == len)
        return;
    size_t rest = len - pos; /* p may be c->msg itself: memmove */
    if (rest > c->mcap) {
        char *m = malloc(rest);
        if (!m) {
            conn_fail(w, c, &w->st.closed);
            return;
        }
        memcpy(m, p + pos, rest);
        free(c->msg);
        c->msg = m;
        c->mcap = (uint32_t)rest;
    } else {
        memmove(c->msg, p + pos, rest);
    }
    c->mlen = (uint32_t)rest;
}

static void mqtt_publish(struct lg_worker *w, struct lg_conn *c, uint64_t t, int marked)
{
    const struct lg_run *r = w->run;
    char *p = conn_frame_begin(w, c, (size_t)r->o.payload_bytes + 256);
    if (!p) {
        conn_fail(w, c, &w->st.closed);
        return;
    }
    char topic[72], obj[MAX_PAYLOAD + 128];
    mqtt_topic(r, c, topic);
    size_t olen = payload_object(r, obj, t, c->id, marked);
    size_t body = 2 + strlen(topic) + olen;
    uint8_t *q = (uint8_t *)p;
    q[0] = 0x30;
    size_t n = 1 + mqtt_remlen(q + 1, body);
    n += mqtt_str(q + n, topic);
    memcpy(q + n, obj, olen);
    conn_frame_commit(w, c, 0x2, n + olen);
}

/* --- dispatch --------------------------------------------------------------------------------- */

void proto_on_open(struct lg_worker *w, struct lg_conn *c)
{
    c->cmd_step = 0;
    switch (w->run->o.proto) {
    case PROTO_ARQONBUS:
        break; /* the welcome comes first */
    case PROTO_MQTT:
        mqtt_connect(w, c);
        break;
    case PROTO_RAW:
        traffic_ready(w, c);
        break;
    }
}

void proto_on_message(struct lg_worker *w, struct lg_conn *c, const char *data, size_t len)
{
    switch (w->run->o.proto) {
    case PROTO_ARQONBUS:
        arq_message(w, c, data, len);
        break;
    case PROTO_MQTT:
        mqtt_stream(w, c, data, len);
        break;
    case PROTO_RAW:
        if (c->state == ST_READY)
            on_delivery_payload(w, data, len);
        break;
    }
}

void proto_publish(struct lg_worker *w, struct lg_conn *c)
{
    const struct lg_run *r = w->run;
    uint64_t t = now_ns();
    int marked = w->phase == PH_MEASURE;
    switch (r->o.proto) {
    case PROTO_ARQONBUS:
        arq_publish(w, c, t, marked);
        break;
    case PROTO_MQTT:
        mqtt_publish(w, c, t, marked);
        break;
    case PROTO_RAW: {
        char *p = conn_frame_begin(w, c, (size_t)r->o.payload_bytes + 128);
        if (!p) {
            conn_fail(w, c, &w->st.closed);
            return;
        }
        conn_frame_commit(w, c, 0x1, payload_object(r, p, t, c->id, marked));
        break;
    }
    }
    c->sent++;
    w->st.publishes++;
    if (marked)
        w->st.publishes_win++;
}

void proto_command(struct lg_worker *w, struct lg_conn *c)
{
    c->awaiting = AW_CMD | (w->phase == PH_MEASURE ? AW_MARKED : 0);
    if (c->awaiting & AW_MARKED)
        w->st.publishes_win++; /* commands scenario: counts commands sent in the window */
    c->cmd_t0 = now_ns();
    if (w->run->o.proto == PROTO_ARQONBUS) {
        arq_next_command(w, c);
        return;
    }
    if (w->run->o.command == CMD_PING) {
        mqtt_send(w, c, 0xC0, NULL, 0);
        return;
    }
    int leave = c->cmd_step & 1;
    c->cmd_step++;
    if (leave)
        c->awaiting |= AW_LEAVE;
    mqtt_subscribe(w, c, leave, (uint16_t)(c->cmd_step & 0x7fff) + 1);
}

void proto_keepalive(struct lg_worker *w, struct lg_conn *c)
{
    mqtt_send(w, c, 0xC0, NULL, 0);
}
