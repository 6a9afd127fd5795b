/* auth-rbac: the token bucket arithmetic and the room/channel patterns as pure functions; the
 * plugin (linked in, with a clock the test sets) against the mock host: the default roles
 * allowed and refused for every action, YAML changes to them, new and inheriting roles, rate
 * limits per client and per subject, reconfigure keeping buckets, the abuse threshold,
 * unknown roles, the sweep of idle buckets, metrics, and configuration errors word for word.
 * One test loads the built module to check what it exports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bucket.h"
#include "diag.h"
#include "limiter.h"
#include "mock_host.h"
#include "pattern.h"
#include "rbac.h"
#include "roles.h"

#define PLUGIN ARQ_BUILD_PLUGIN_DIR "/auth-rbac.so"

static const struct arq_plugin *const desc = &rbac_descriptor;

/* ---------------------------------------------------------------------------------------- */
/* Token buckets                                                                             */
/* ---------------------------------------------------------------------------------------- */

#define PER_SECOND(n) ((int64_t)(n)*60)
#define SEC           INT64_C(1000000)
#define MS            INT64_C(1000)

/* Take `n` tokens at `now`; each must be available. */
static void take_n(struct bucket *b, const struct bucket_rate *r, int64_t now, int n)
{
    for (int i = 0; i < n; i++) {
        assert_int_equal(bucket_wait_us(b, r, now), 0);
        bucket_take(b);
    }
}

static void test_bucket_starts_full_and_refills_at_its_rate(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate r = {PER_SECOND(10), 20};
    bucket_init(&b, 5 * SEC);
    assert_int_equal(bucket_tokens(&b, &r, 5 * SEC), 20);
    take_n(&b, &r, 5 * SEC, 20);
    /* Empty: the next token comes after 1/10 s, exactly. */
    assert_int_equal(bucket_wait_us(&b, &r, 5 * SEC), 100 * MS);
    assert_int_equal(bucket_wait_us(&b, &r, 5 * SEC + 99999), 1);
    assert_int_equal(bucket_wait_us(&b, &r, 5 * SEC + 100 * MS), 0);
    /* Half a second brings five. */
    bucket_take(&b);
    assert_int_equal(bucket_tokens(&b, &r, 5 * SEC + 600 * MS), 5);
}

static void test_bucket_never_holds_more_than_its_burst(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate r = {PER_SECOND(100), 200};
    bucket_init(&b, 0);
    take_n(&b, &r, 0, 150);
    /* An hour of idling refills to the burst, not beyond. */
    assert_int_equal(bucket_tokens(&b, &r, 3600 * SEC), 200);
    take_n(&b, &r, 3600 * SEC, 200);
    assert_true(bucket_wait_us(&b, &r, 3600 * SEC) > 0);
}

static void test_bucket_keeps_fractions_of_tokens_exactly(void **state)
{
    (void)state;
    /* 7 a minute: one token every 8571428.57 µs, a period no integer of microseconds holds.
     * A refill every microsecond must give exactly what one refill at the end gives. */
    struct bucket_rate r = {7, 1};
    struct bucket fine, coarse;
    bucket_init(&fine, 0);
    bucket_init(&coarse, 0);
    take_n(&fine, &r, 0, 1);
    take_n(&coarse, &r, 0, 1);
    for (int64_t t = 1; t <= 3 * SEC; t++)
        bucket_refill(&fine, &r, t);
    bucket_refill(&coarse, &r, 3 * SEC);
    assert_int_equal(fine.level, coarse.level);
    assert_int_equal(fine.level, 7 * 3 * SEC); /* 21/60 of a token, in 1/60e6 units */
    /* The token is complete at ceil(60e6 / 7) µs = 8571429, not a microsecond earlier. */
    assert_int_equal(bucket_wait_us(&fine, &r, 3 * SEC), 8571429 - 3 * SEC);
    assert_int_equal(bucket_wait_us(&fine, &r, 8571428), 1);
    assert_int_equal(bucket_wait_us(&fine, &r, 8571429), 0);
}

static void test_bucket_retry_after_is_the_exact_deficit(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate r = {PER_SECOND(3), 2}; /* one every 333333.33 µs */
    bucket_init(&b, 0);
    take_n(&b, &r, 0, 2);
    assert_int_equal(bucket_wait_us(&b, &r, 0), 333334);
    assert_int_equal(bucket_wait_us(&b, &r, 333333), 1);
    assert_int_equal(bucket_wait_us(&b, &r, 333334), 0);
    bucket_take(&b);
    /* Taken at 333334: the remainder (2/3 of a µs worth) carries over. */
    assert_int_equal(bucket_wait_us(&b, &r, 333334), 333333);
}

static void test_bucket_rate_change_keeps_tokens_clamped_to_the_new_burst(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate old = {PER_SECOND(100), 200};
    bucket_init(&b, 0);
    take_n(&b, &old, 0, 50); /* 150 left */
    /* A smaller burst clamps what is held; a larger one keeps it. */
    struct bucket_rate small = {PER_SECOND(10), 20};
    assert_int_equal(bucket_tokens(&b, &small, 0), 20);
    struct bucket_rate big = {PER_SECOND(10), 1000};
    assert_int_equal(bucket_tokens(&b, &big, 0), 20);
    take_n(&b, &big, 0, 20);
    /* The next refill runs at the new rate: 10/s, not 100/s. */
    assert_int_equal(bucket_wait_us(&b, &big, 0), 100 * MS);
    assert_int_equal(bucket_tokens(&b, &big, SEC), 10);
}

static void test_bucket_rate_zero_means_no_limit_burst_zero_refuses(void **state)
{
    (void)state;
    struct bucket b;
    /* Rate 0 (with burst 0 or any burst): unlimited. */
    struct bucket_rate none = {0, 0};
    bucket_init(&b, 0);
    assert_true(bucket_unlimited(&none));
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(bucket_wait_us(&b, &none, 0), 0);
        bucket_take(&b);
    }
    assert_true(bucket_full(&b, 0));
    /* A rate with burst 0 can never hold a token (configuration refuses such a limit). */
    struct bucket_rate never = {PER_SECOND(10), 0};
    bucket_init(&b, 0);
    assert_int_equal(bucket_wait_us(&b, &never, 0), INT64_MAX);
    assert_int_equal(bucket_wait_us(&b, &never, 100 * SEC), INT64_MAX);
}

static void test_bucket_survives_extremes_of_time_and_rate(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate r = {BUCKET_MAX_PER_MINUTE, BUCKET_MAX_BURST};
    bucket_init(&b, 0);
    take_n(&b, &r, 0, 3);
    /* Ten years idle at the largest rate: no overflow, exactly full. */
    int64_t later = INT64_C(10) * 365 * 86400 * SEC;
    assert_int_equal(bucket_tokens(&b, &r, later), BUCKET_MAX_BURST);
    /* Time going backwards adds nothing and takes nothing. */
    take_n(&b, &r, later, 1);
    int64_t level = b.level;
    bucket_refill(&b, &r, later - SEC);
    assert_int_equal(b.level, level);
    assert_int_equal(b.stamp_us, later);
}

static void test_bucket_full_tells_when_it_equals_a_new_one(void **state)
{
    (void)state;
    struct bucket b;
    struct bucket_rate r = {PER_SECOND(100), 200};
    bucket_init(&b, 0);
    assert_true(bucket_full(&b, 0)); /* new */
    take_n(&b, &r, 0, 2);
    assert_false(bucket_full(&b, 0));
    assert_false(bucket_full(&b, 20 * MS - 1));
    assert_true(bucket_full(&b, 20 * MS));
    /* bucket_full() only looks. */
    assert_int_equal(b.stamp_us, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Patterns                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void test_glob_matches_runs_within_a_segment(void **state)
{
    (void)state;
    static const struct {
        const char *glob, *name;
        int match;
    } cases[] = {
        {"chat", "chat", 1},     {"chat", "chats", 0},      {"chat", "cha", 0},
        {"*", "anything", 1},    {"public*", "public", 1},  {"public*", "public-lobby", 1},
        {"public*", "publi", 0}, {"public*", "xpublic", 0}, {"*-eu", "room-eu", 1},
        {"*-eu", "room-us", 0},  {"a*b*c", "aXXbYYc", 1},   {"a*b*c", "abcbc", 1},
        {"a*b*c", "acb", 0},     {"*a*", "banana", 1},      {"**x", "x", 1},
        {"a*a*a", "aaa", 1},     {"a*a*a", "aa", 0},        {"", "", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (glob_match(cases[i].glob, cases[i].name) != cases[i].match)
            fail_msg("glob \"%s\" against \"%s\": expected %d", cases[i].glob, cases[i].name,
                     cases[i].match);
}

/* Whether `pattern` matches `target` ("room" or "room/channel"). */
static int matches(const char *pattern, const char *target)
{
    struct pattern p;
    char why[200];
    if (pattern_compile(pattern, &p, why, sizeof why) != 0)
        fail_msg("pattern \"%s\" refused: %s", pattern, why);
    char room[200];
    snprintf(room, sizeof room, "%s", target);
    char *slash = strchr(room, '/');
    if (slash)
        *slash = '\0';
    int m = pattern_match(&p, room, slash ? slash + 1 : NULL);
    pattern_free(&p);
    return m;
}

static void test_patterns_match_rooms_and_channels_by_segment(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *target;
        int match;
    } cases[] = {
        /* A one-segment pattern is a room itself, never its channels. */
        {"chat", "chat", 1},
        {"chat", "chat/general", 0},
        {"*", "chat", 1},
        {"*", "chat/general", 0},
        /* Two segments: channels only. */
        {"chat/*", "chat/general", 1},
        {"chat/*", "chat", 0},
        {"chat/*", "chatter/general", 0},
        {"*/*", "chat/general", 1},
        {"*/*", "chat", 0},
        {"chat/gen*", "chat/general", 1},
        {"chat/gen*", "chat/random", 0},
        {"*/general", "sales/general", 1},
        /* The guest defaults. */
        {"public*", "public", 1},
        {"public*", "public-lobby", 1},
        {"public*", "public-lobby/news", 0},
        {"public*/*", "public-lobby/news", 1},
        {"public*/*", "private/news", 0},
        {"public*", "republic", 0},
        /* `**`: everything. */
        {"**", "chat", 1},
        {"**", "chat/general", 1},
        /* Names may hold ':' '.' '-' '_'. */
        {"t1:*", "t1:orders", 1},
        {"t1:*", "t2:orders", 0},
        {"v1.2_a-b/x", "v1.2_a-b/x", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (matches(cases[i].pattern, cases[i].target) != cases[i].match)
            fail_msg("pattern \"%s\" against \"%s\": expected %d", cases[i].pattern,
                     cases[i].target, cases[i].match);
}

static struct pattern_set set_of(const char *const *patterns)
{
    struct pattern_set set = {0};
    for (size_t i = 0; patterns[i]; i++) {
        struct pattern p;
        char why[200];
        assert_int_equal(pattern_compile(patterns[i], &p, why, sizeof why), 0);
        assert_int_equal(pattern_set_add(&set, &p), 0);
        pattern_free(&p);
    }
    return set;
}

static void test_deny_patterns_win_wherever_they_are_written(void **state)
{
    (void)state;
    /* The deny comes last in the list and still wins. */
    static const char *const list[] = {"**", "chat/*", "!chat/secret*", "!admin", NULL};
    struct pattern_set set = set_of(list);
    assert_true(pattern_set_allows(&set, "chat", "general"));
    assert_false(pattern_set_allows(&set, "chat", "secret"));
    assert_false(pattern_set_allows(&set, "chat", "secret-2"));
    assert_true(pattern_set_allows(&set, "chat", NULL));
    assert_false(pattern_set_allows(&set, "admin", NULL));
    assert_true(pattern_set_allows(&set, "admin", "x")); /* "!admin" is the room itself */
    pattern_set_free(&set);

    static const char *const deny_all[] = {"chat/*", "!**", NULL};
    set = set_of(deny_all);
    assert_false(pattern_set_allows(&set, "chat", "general"));
    pattern_set_free(&set);

    /* No pattern: nothing allowed. */
    struct pattern_set empty = {0};
    assert_false(pattern_set_allows(&empty, "chat", NULL));
}

static void test_bad_patterns_are_refused_with_the_reason(void **state)
{
    (void)state;
    static const struct {
        const char *pattern, *why;
    } cases[] = {
        {"", "the pattern is empty"},
        {"!", "\"!\" needs a pattern after it"},
        {"a/b/c", "a pattern is room or room/channel: at most one '/'"},
        {"/x", "the room part is empty"},
        {"chat/", "the channel part is empty"},
        {"chat/**", "\"**\" stands alone (it matches every room and channel); within a name use "
                    "\"*\""},
        {"a**", "\"**\" stands alone (it matches every room and channel); within a name use "
                "\"*\""},
        {"chat room", "' ' cannot appear in a room name"},
        {"chat/gen#", "'#' cannot appear in a channel name"},
        {"!!x", "'!' cannot appear in a room name"},
        {"caf\xc3\xa9", "byte 0xc3 cannot appear in a room name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct pattern p;
        char why[200] = "";
        assert_int_equal(pattern_compile(cases[i].pattern, &p, why, sizeof why), -1);
        assert_string_equal(why, cases[i].why);
    }
    char longest[200];
    memset(longest, 'a', 129);
    longest[129] = '\0';
    struct pattern p;
    char why[200];
    assert_int_equal(pattern_compile(longest, &p, why, sizeof why), -1);
    assert_string_equal(why, "the room part is longer than 128 characters, the longest name");
    longest[128] = '*'; /* 128 letters and a star: fine */
    assert_int_equal(pattern_compile(longest, &p, why, sizeof why), 0);
    pattern_free(&p);
}

/* ---------------------------------------------------------------------------------------- */
/* The limiter's maps                                                                        */
/* ---------------------------------------------------------------------------------------- */

static void test_limiter_sweep_frees_idle_entries_and_shrinks(void **state)
{
    (void)state;
    struct limiter l = {0};
    struct bucket_rate r = {PER_SECOND(100), 200};
    char id[64];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof id, "arq_client_%04d", i);
        struct limiter_entry *e = limiter_client(&l, id, 0);
        assert_non_null(e);
        assert_int_equal(bucket_wait_us(&e->messages, &r, 0), 0);
        bucket_take(&e->messages);
    }
    /* Found again, not made twice. */
    struct limiter_entry *seven = limiter_client(&l, "arq_client_0007", 0);
    assert_ptr_equal(limiter_client(&l, "arq_client_0007", 5), seven);
    assert_int_equal(limiter_clients(&l), 1000);
    size_t big = limiter_slots(&l);
    assert_true(big >= 1000);
    /* Client 5 keeps taking: not full at 10 ms. */
    struct limiter_entry *busy = limiter_client(&l, "arq_client_0005", 0);
    take_n(&busy->messages, &r, 5 * MS, 1);
    assert_int_equal(limiter_sweep(&l, 9 * MS, 10 * SEC), 0);
    assert_int_equal(limiter_sweep(&l, 10 * MS, 10 * SEC), 999);
    assert_int_equal(limiter_clients(&l), 1);
    assert_true(limiter_slots(&l) < big);
    assert_ptr_equal(limiter_client(&l, "arq_client_0005", 10 * MS), busy);
    assert_int_equal(limiter_sweep(&l, 20 * MS, 10 * SEC), 1);
    assert_int_equal(limiter_clients(&l), 0);
    limiter_free(&l);
}

static void test_limiter_keys_subjects_by_tenant(void **state)
{
    (void)state;
    struct limiter l = {0};
    struct limiter_entry *a = limiter_subject(&l, NULL, "alice", 0);
    struct limiter_entry *b = limiter_subject(&l, "acme", "alice", 0);
    struct limiter_entry *c = limiter_subject(&l, "acme", "bob", 0);
    assert_non_null(a);
    assert_true(a != b && b != c && a != c);
    assert_ptr_equal(limiter_subject(&l, "", "alice", 0), a);
    assert_ptr_equal(limiter_subject(&l, "acme", "alice", 0), b);
    /* A client id equal to a subject is another map. */
    assert_true(limiter_client(&l, "alice", 0) != a);
    assert_int_equal(limiter_subjects(&l), 3);
    assert_int_equal(limiter_clients(&l), 1);
    limiter_free(&l);
}

/* ---------------------------------------------------------------------------------------- */
/* The plugin                                                                                */
/* ---------------------------------------------------------------------------------------- */

struct fx {
    struct mock_host *mh;
    void *self;
    int64_t now; /* the instance's clock, in µs */
    struct arq_auth_result out;
};

static int64_t fx_clock(void *arg)
{
    return ((struct fx *)arg)->now;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f || !(f->mh = mock_host_new("rbac"))) {
        free(f);
        return -1;
    }
    f->now = 1000 * SEC;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->self) {
        desc->stop(f->self);
        desc->destroy(f->self);
    }
    mock_host_free(f->mh);
    free(f);
    return 0;
}

static void create(struct fx *f, const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    mock_host_create_plugin(f->mh, desc, cfg, &f->self);
    rbac_set_clock(f->self, fx_clock, f);
    struct arq_error err = {""};
    assert_int_equal(desc->start(f->self, NULL, &err), ARQ_OK);
}

/* The error create gives for `yaml`. */
static const char *create_error(const char *yaml, struct arq_error *err)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    struct mock_host *mh = mock_host_new("rbac");
    void *self = NULL;
    int rc = desc->create(mock_host_api(), mock_host_ctx(mh), cfg, &self, err);
    json_decref(cfg);
    assert_int_equal(rc, ARQ_EINVAL);
    assert_null(self);
    mock_host_free(mh);
    return err->text;
}

struct act {
    const char *action, *room, *channel, *command, *group, *to;
};

static enum arq_auth_verdict authz_as(struct fx *f, const char *role, const char *subject,
                                      const char *tenant, const char *client_id, struct act a)
{
    const struct arq_auth_ops *ops = desc->ops;
    struct arq_principal who = {.struct_size = sizeof who,
                                .subject = subject,
                                .role = role,
                                .tenant = tenant,
                                .client_id = client_id};
    struct arq_action what = {.struct_size = sizeof what,
                              .action = a.action,
                              .room = a.room,
                              .channel = a.channel,
                              .command = a.command,
                              .group = a.group,
                              .client_id = a.to,
                              .path = !strcmp(a.action, "connect") ? "/" : NULL};
    memset(&f->out, 0, sizeof f->out);
    f->out.struct_size = sizeof f->out;
    enum arq_auth_verdict v = ops->authorize(f->self, &who, &what, &f->out);
    assert_int_equal(f->out.verdict, v);
    return v;
}

/* As client "arq_client_1" with subject NULL. */
static enum arq_auth_verdict authz(struct fx *f, const char *role, struct act a)
{
    return authz_as(f, role, NULL, NULL, "arq_client_1", a);
}

#define CONNECT         ((struct act){.action = "connect"})
#define PUBLISH(r_, c_) ((struct act){.action = "publish", .room = (r_), .channel = (c_)})
#define DIRECT          ((struct act){.action = "direct", .to = "arq_client_2"})
#define JOIN(r_, c_)    ((struct act){.action = "join", .room = (r_), .channel = (c_)})
#define HISTORY(r_, c_) ((struct act){.action = "history", .room = (r_), .channel = (c_)})
#define COMMAND(n_, g_) ((struct act){.action = "command", .command = (n_), .group = (g_)})

static void expect_deny(struct fx *f, const char *role, struct act a, const char *reason)
{
    assert_int_equal(authz(f, role, a), ARQ_AUTH_DENY);
    assert_string_equal(f->out.reason, reason);
}

static void expect_allow(struct fx *f, const char *role, struct act a)
{
    if (authz(f, role, a) != ARQ_AUTH_ALLOW)
        fail_msg("%s refused to %s: %s", a.action, role, f->out.reason);
}

/* `n` allowed in a row, at the current time, for client `client`. */
static void allow_n(struct fx *f, const char *role, const char *client, struct act a, int n)
{
    for (int i = 0; i < n; i++)
        if (authz_as(f, role, NULL, NULL, client, a) != ARQ_AUTH_ALLOW)
            fail_msg("%s %d of %d refused to %s: %s", a.action, i + 1, n, role, f->out.reason);
}

static void expect_limited(struct fx *f, const char *role, const char *client, struct act a,
                           uint64_t retry_ms, const char *reason)
{
    assert_int_equal(authz_as(f, role, NULL, NULL, client, a), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.retry_after_ms, retry_ms);
    assert_string_equal(f->out.reason, reason);
}

static void test_descriptor_exports_an_authorize_only_policy(void **state)
{
    (void)state;
    void *handle = NULL;
    const struct arq_plugin *loaded = mock_host_load_plugin(PLUGIN, &handle);
    assert_non_null(loaded);
    assert_string_equal(loaded->name, "auth-rbac");
    assert_int_equal(loaded->kind, ARQ_KIND_AUTH);
    const struct arq_auth_ops *ops = loaded->ops;
    assert_int_equal(ops->struct_size, sizeof *ops);
    assert_null(ops->authenticate);
    assert_null(ops->refresh);
    assert_non_null(ops->authorize);
    assert_non_null(loaded->reconfigure);
    /* Every option is reloadable. */
    size_t n = 0;
    for (const struct arq_option *o = loaded->options; o->name; o++, n++)
        assert_true(o->flags & ARQ_OPT_RELOADABLE);
    assert_int_equal(n, 4);

    /* The module works on its own clock: a user may publish. */
    struct mock_host *mh = mock_host_new("rbac");
    void *self = NULL;
    mock_host_create_plugin(mh, loaded, mock_host_validate(loaded->options, "", NULL), &self);
    struct arq_principal who = {.struct_size = sizeof who, .role = "user", .client_id = "c"};
    struct arq_action what = {.struct_size = sizeof what, .action = "publish", .room = "chat"};
    struct arq_auth_result out = {.struct_size = sizeof out};
    assert_int_equal(ops->authorize(self, &who, &what, &out), ARQ_AUTH_ALLOW);
    loaded->destroy(self);
    mock_host_free(mh);
    assert_int_equal(mock_host_unload_plugin(handle), 0);
}

static void test_guest_may_connect_run_guest_commands_and_read_public_rooms(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_allow(f, "guest", CONNECT);
    static const char *const guest_commands[] = {"ping",   "status",     "help",
                                                 "whoami", "list_rooms", "list_channels"};
    for (size_t i = 0; i < sizeof guest_commands / sizeof *guest_commands; i++)
        expect_allow(f, "guest", COMMAND(guest_commands[i], "guest"));
    expect_allow(f, "guest", JOIN("public", NULL));
    expect_allow(f, "guest", JOIN("public-lobby", NULL));
    expect_allow(f, "guest", JOIN("public-lobby", "news"));
    expect_allow(f, "guest", HISTORY("public-lobby", NULL));
    expect_allow(f, "guest", HISTORY("public-lobby", "news"));
}

static void test_guest_may_not_publish_send_direct_or_leave_public_rooms(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_deny(f, "guest", PUBLISH("chat", "general"),
                "role guest may not publish to chat/general");
    expect_deny(f, "guest", PUBLISH("public-lobby", NULL),
                "role guest may not publish to public-lobby");
    expect_deny(f, "guest", DIRECT, "role guest may not send direct messages");
    expect_deny(f, "guest", JOIN("chat", "general"), "role guest may not join chat/general");
    expect_deny(f, "guest", JOIN("chat", NULL), "role guest may not join chat");
    expect_deny(f, "guest", HISTORY("chat", "general"),
                "role guest may not read the history of chat/general");
    expect_deny(f, "guest", COMMAND("reload", "admin"), "role guest may not run command reload");
    expect_deny(f, "guest", COMMAND("delete_channel", "admin"),
                "role guest may not run command delete_channel");
    expect_deny(f, "guest", COMMAND("create_channel", "user"),
                "role guest may not run command create_channel");
    /* A command whose group the host does not know: only a rule by name could allow it. */
    expect_deny(f, "guest", COMMAND("ping", NULL), "role guest may not run command ping");
}

static void test_user_may_do_all_but_admin_commands(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_allow(f, "user", CONNECT);
    expect_allow(f, "user", COMMAND("ping", "guest"));
    expect_allow(f, "user", COMMAND("create_channel", "user"));
    expect_allow(f, "user", COMMAND("history", "user"));
    expect_allow(f, "user", PUBLISH("chat", NULL));
    expect_allow(f, "user", PUBLISH("chat", "general"));
    expect_allow(f, "user", DIRECT);
    expect_allow(f, "user", JOIN("anything", "at-all"));
    expect_allow(f, "user", JOIN("anything", NULL));
    expect_allow(f, "user", HISTORY("chat", "general"));
    expect_deny(f, "user", COMMAND("reload", "admin"), "role user may not run command reload");
    expect_deny(f, "user", COMMAND("disconnect_client", "admin"),
                "role user may not run command disconnect_client");
    expect_deny(f, "user", COMMAND("delete_channel", "admin"),
                "role user may not run command delete_channel");
}

static void test_admin_may_do_everything_without_limits(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_allow(f, "admin", CONNECT);
    expect_allow(f, "admin", COMMAND("reload", "admin"));
    expect_allow(f, "admin", COMMAND("delete_channel", "admin"));
    expect_allow(f, "admin", COMMAND("disconnect_client", "admin"));
    expect_allow(f, "admin", COMMAND("made_up", NULL));
    expect_allow(f, "admin", JOIN("x", "y"));
    expect_allow(f, "admin", HISTORY("x", NULL));
    allow_n(f, "admin", "arq_client_1", PUBLISH("chat", "general"), 5000);
    allow_n(f, "admin", "arq_client_1", DIRECT, 5000);
    allow_n(f, "admin", "arq_client_1", COMMAND("status", "guest"), 5000);
    /* No limit, no bucket kept. */
    assert_int_equal(rbac_tracked_clients(f->self), 0);
}

static void test_unknown_actions_are_denied(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_deny(f, "admin", ((struct act){.action = "teleport"}),
                "auth-rbac knows no action \"teleport\"");
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_auth_rbac_denied_total",
                                      "instance=\"rbac\",action=\"other\""),
                     1);
}

static void test_user_message_bucket_refuses_past_the_burst_with_exact_retry(void **state)
{
    struct fx *f = *state;
    create(f, "");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", "general"), 150);
    allow_n(f, "user", "arq_client_1", DIRECT, 50); /* direct shares the message bucket */
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
    assert_int_equal(f->out.abusive, 0);
    expect_limited(f, "user", "arq_client_1", DIRECT, 10, "message rate limit: 100/s, burst 200");
    /* 4 ms later 6 remain; at 10 ms one token is back. */
    f->now += 4 * MS;
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 6,
                   "message rate limit: 100/s, burst 200");
    f->now += 5999; /* 1 µs short */
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 1,
                   "message rate limit: 100/s, burst 200");
    f->now += 1;
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 1);
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
    /* Commands have their own bucket. */
    allow_n(f, "user", "arq_client_1", COMMAND("ping", "guest"), 100);
    expect_limited(f, "user", "arq_client_1", COMMAND("ping", "guest"), 20,
                   "command rate limit: 50/s, burst 100");
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_rate_limited_total",
                                      "instance=\"rbac\",kind=\"messages\""),
                     5);
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_rate_limited_total",
                                      "instance=\"rbac\",kind=\"commands\""),
                     1);
}

static void test_guest_command_bucket_is_10_per_second_burst_20(void **state)
{
    struct fx *f = *state;
    create(f, "");
    allow_n(f, "guest", "arq_client_1", COMMAND("ping", "guest"), 20);
    expect_limited(f, "guest", "arq_client_1", COMMAND("ping", "guest"), 100,
                   "command rate limit: 10/s, burst 20");
    /* Joins and history reads are not rate limited. */
    allow_n(f, "guest", "arq_client_1", JOIN("public", NULL), 100);
    allow_n(f, "guest", "arq_client_1", HISTORY("public", NULL), 100);
}

static void test_refused_actions_take_no_token(void **state)
{
    struct fx *f = *state;
    create(f, "");
    for (int i = 0; i < 100; i++)
        expect_deny(f, "guest", COMMAND("reload", "admin"),
                    "role guest may not run command reload");
    allow_n(f, "guest", "arq_client_1", COMMAND("ping", "guest"), 20);
    expect_limited(f, "guest", "arq_client_1", COMMAND("ping", "guest"), 100,
                   "command rate limit: 10/s, burst 20");
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_auth_rbac_denied_total",
                                      "instance=\"rbac\",action=\"command\""),
                     100);
}

static void test_limits_are_per_connection_and_not_for_server_side_requests(void **state)
{
    struct fx *f = *state;
    create(f, "");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
    allow_n(f, "user", "arq_client_2", PUBLISH("chat", NULL), 200);
    /* client_id NULL: the HTTP API, never limited (and no bucket kept for it). */
    for (int i = 0; i < 1000; i++)
        assert_int_equal(authz_as(f, "user", "svc", NULL, NULL, PUBLISH("chat", NULL)),
                         ARQ_AUTH_ALLOW);
    assert_int_equal(rbac_tracked_clients(f->self), 2);
}

static void test_yaml_field_replaces_only_that_field_of_a_builtin_role(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n"
              "  guest:\n"
              "    publish: [\"public*\"]\n"
              "  user:\n"
              "    limits: {messages_per_second: 10}\n");
    /* guest: publish given; join, history, direct, commands and limits kept. */
    expect_allow(f, "guest", PUBLISH("public-lobby", NULL));
    expect_deny(f, "guest", PUBLISH("public-lobby", "news"),
                "role guest may not publish to public-lobby/news");
    expect_allow(f, "guest", JOIN("public-lobby", "news"));
    expect_deny(f, "guest", JOIN("chat", NULL), "role guest may not join chat");
    expect_deny(f, "guest", DIRECT, "role guest may not send direct messages");
    expect_deny(f, "guest", COMMAND("reload", "admin"), "role guest may not run command reload");
    allow_n(f, "guest", "arq_client_1", PUBLISH("public", NULL), 19);
    expect_limited(f, "guest", "arq_client_1", PUBLISH("public", NULL), 100,
                   "message rate limit: 10/s, burst 20");
    /* user: the rate given, the burst kept at 200, the command limit untouched. */
    allow_n(f, "user", "arq_client_2", PUBLISH("chat", NULL), 200);
    expect_limited(f, "user", "arq_client_2", PUBLISH("chat", NULL), 100,
                   "message rate limit: 10/s, burst 200");
    allow_n(f, "user", "arq_client_2", COMMAND("ping", "guest"), 100);
    expect_limited(f, "user", "arq_client_2", COMMAND("ping", "guest"), 20,
                   "command rate limit: 50/s, burst 100");
}

static void test_a_rate_of_zero_removes_a_builtin_limit(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n  user:\n    limits: {messages_per_second: 0}\n");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 5000);
    allow_n(f, "user", "arq_client_1", COMMAND("ping", "guest"), 100);
    expect_limited(f, "user", "arq_client_1", COMMAND("ping", "guest"), 20,
                   "command rate limit: 50/s, burst 100");
}

static void test_new_role_inherits_and_adds_to_the_lists(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n"
              "  moderator:\n"
              "    inherits: user\n"
              "    commands: [delete_channel, disconnect_client]\n"
              "    limits: {commands_per_minute: 600}\n"
              "  auditor:\n"
              "    inherits: admin\n"
              "    commands: [\"!reload\", \"!@user\"]\n"
              "    publish: [\"!**\"]\n"
              "    direct: false\n"
              "  bot:\n"
              "    connect: true\n"
              "    publish: [\"telemetry/*\"]\n"
              "    limits: {messages_per_minute: 30}\n");
    /* moderator: user's permissions, plus two commands, and a command limit per minute with
     * user's burst. */
    expect_allow(f, "moderator", PUBLISH("chat", "general"));
    expect_allow(f, "moderator", COMMAND("ping", "guest"));
    expect_allow(f, "moderator", COMMAND("create_channel", "user"));
    expect_allow(f, "moderator", COMMAND("delete_channel", "admin"));
    expect_deny(f, "moderator", COMMAND("reload", "admin"),
                "role moderator may not run command reload");
    allow_n(f, "moderator", "arq_client_3", COMMAND("ping", "guest"), 100);
    expect_limited(f, "moderator", "arq_client_3", COMMAND("ping", "guest"), 100,
                   "command rate limit: 600/min, burst 100");
    allow_n(f, "moderator", "arq_client_3", PUBLISH("chat", NULL), 200);
    expect_limited(f, "moderator", "arq_client_3", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
    /* auditor: admin minus what it denies. */
    expect_allow(f, "auditor", COMMAND("delete_channel", "admin"));
    expect_allow(f, "auditor", COMMAND("ping", "guest"));
    expect_deny(f, "auditor", COMMAND("reload", "admin"),
                "role auditor may not run command reload");
    expect_deny(f, "auditor", COMMAND("create_channel", "user"),
                "role auditor may not run command create_channel");
    expect_deny(f, "auditor", PUBLISH("chat", NULL), "role auditor may not publish to chat");
    expect_deny(f, "auditor", DIRECT, "role auditor may not send direct messages");
    expect_allow(f, "auditor", HISTORY("chat", "general"));
    /* bot: a new role starts empty; a rate without a burst gets a burst of its count. */
    expect_allow(f, "bot", CONNECT);
    expect_allow(f, "bot", PUBLISH("telemetry", "cpu"));
    expect_deny(f, "bot", JOIN("telemetry", "cpu"), "role bot may not join telemetry/cpu");
    expect_deny(f, "bot", COMMAND("ping", "guest"), "role bot may not run command ping");
    expect_deny(f, "bot", DIRECT, "role bot may not send direct messages");
    allow_n(f, "bot", "arq_client_4", PUBLISH("telemetry", "cpu"), 30);
    expect_limited(f, "bot", "arq_client_4", PUBLISH("telemetry", "cpu"), 2000,
                   "message rate limit: 30/min, burst 30");
}

static void test_builtin_role_with_inherits_starts_from_the_parent(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n  guest:\n    inherits: user\n    publish: [\"!secret*\"]\n");
    expect_allow(f, "guest", PUBLISH("chat", NULL));
    expect_allow(f, "guest", DIRECT);
    expect_deny(f, "guest", PUBLISH("secret", NULL), "role guest may not publish to secret");
    allow_n(f, "guest", "arq_client_2", PUBLISH("chat", NULL), 200);
    expect_limited(f, "guest", "arq_client_2", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
}

static void reconfigure(struct fx *f, const char *yaml)
{
    json_t *cfg = mock_host_validate(desc->options, yaml, NULL);
    assert_non_null(cfg);
    struct arq_error err = {""};
    int rc = desc->reconfigure(f->self, cfg, &err);
    json_decref(cfg);
    if (rc != ARQ_OK)
        fail_msg("reconfigure failed: %s", err.text);
}

static void test_reconfigure_applies_new_rates_to_existing_buckets(void **state)
{
    struct fx *f = *state;
    create(f, "");
    /* Client 1 empties its bucket; client 2 has used none. */
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    allow_n(f, "user", "arq_client_2", PUBLISH("chat", NULL), 1);
    reconfigure(f, "roles:\n  user:\n    limits: {messages_per_second: 10, messages_burst: 5}\n");
    /* Client 1 is still empty (not reset to a full bucket), and refills at the new rate: after
     * 50 ms half a token, not five. */
    f->now += 50 * MS;
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 50,
                   "message rate limit: 10/s, burst 5");
    /* Client 2's 199 tokens are clamped to the new burst. */
    allow_n(f, "user", "arq_client_2", PUBLISH("chat", NULL), 5);
    expect_limited(f, "user", "arq_client_2", PUBLISH("chat", NULL), 100,
                   "message rate limit: 10/s, burst 5");
    assert_int_equal(rbac_tracked_clients(f->self), 2);
    /* Permissions change at once too. */
    reconfigure(f, "roles:\n  user:\n    publish: [\"!chat\", \"**\"]\n");
    expect_deny(f, "user", PUBLISH("chat", NULL), "role user may not publish to chat");
}

static void test_failed_reconfigure_keeps_everything(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n  user:\n    limits: {messages_per_second: 1, messages_burst: 1}\n");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 1);
    json_t *cfg = mock_host_validate(
        desc->options, "roles:\n  user:\n    publish: [\"a/b/c\"]\nunknown_role: guest\n", NULL);
    struct arq_error err = {""};
    assert_int_equal(desc->reconfigure(f->self, cfg, &err), ARQ_EINVAL);
    json_decref(cfg);
    assert_string_equal(err.text, "roles.user.publish[0]: bad pattern \"a/b/c\": a pattern is "
                                  "room or room/channel: at most one '/'");
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 1000,
                   "message rate limit: 1/s, burst 1");
    expect_deny(f, "visitor", CONNECT, "role visitor is not defined");
}

static void test_abuse_threshold_marks_a_client_abusive(void **state)
{
    struct fx *f = *state;
    create(f, "abuse_threshold: 3\nabuse_window: 10s\n");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz(f, "user", PUBLISH("chat", NULL)), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.abusive, 0);
    f->now += 5 * SEC;
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz(f, "user", COMMAND("x", NULL)), ARQ_AUTH_DENY); /* not counted */
    assert_int_equal(authz(f, "user", PUBLISH("chat", NULL)), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.abusive, 0);
    /* The third refusal within 10 s. */
    f->now += 5 * SEC - 1;
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz(f, "user", PUBLISH("chat", NULL)), ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.abusive, 1);
    /* Another client is not affected. */
    allow_n(f, "user", "arq_client_2", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz_as(f, "user", NULL, NULL, "arq_client_2", PUBLISH("chat", NULL)),
                     ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.abusive, 0);
}

static void test_refusals_spread_beyond_the_window_are_not_abuse(void **state)
{
    struct fx *f = *state;
    create(f, "abuse_threshold: 3\nabuse_window: 10s\n");
    for (int i = 0; i < 10; i++) {
        allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
        assert_int_equal(authz(f, "user", PUBLISH("chat", NULL)), ARQ_AUTH_RATE_LIMITED);
        assert_int_equal(f->out.abusive, 0);
        f->now += 5 * SEC; /* three refusals span exactly 10 s: outside the window */
    }
    /* abuse_threshold 0: never abusive. */
    reconfigure(f, "abuse_threshold: 0\n");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(authz(f, "guest", COMMAND("ping", "guest")),
                         i < 20 ? ARQ_AUTH_ALLOW : ARQ_AUTH_RATE_LIMITED);
        assert_int_equal(f->out.abusive, 0);
    }
}

static void test_unknown_role_is_denied_by_default(void **state)
{
    struct fx *f = *state;
    create(f, "");
    expect_deny(f, "visitor", CONNECT, "role visitor is not defined");
    expect_deny(f, "visitor", JOIN("public", NULL), "role visitor is not defined");
    expect_deny(f, NULL, PUBLISH("chat", NULL), "role (none) is not defined");
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_auth_rbac_denied_total",
                                      "instance=\"rbac\",action=\"connect\""),
                     1);
    assert_int_equal(mock_host_metric(f->mh, "arqonbus_auth_rbac_denied_total",
                                      "instance=\"rbac\",action=\"publish\""),
                     1);
}

static void test_unknown_role_can_be_treated_as_guest(void **state)
{
    struct fx *f = *state;
    create(f, "unknown_role: guest\nroles:\n  guest:\n    direct: true\n");
    expect_allow(f, "visitor", CONNECT);
    expect_allow(f, "visitor", JOIN("public", NULL));
    expect_allow(f, "visitor", DIRECT); /* the configured guest, not the built-in one */
    expect_deny(f, "visitor", PUBLISH("chat", NULL), "role guest may not publish to chat");
    expect_deny(f, NULL, JOIN("chat", NULL), "role guest may not join chat");
    allow_n(f, "visitor", "arq_client_1", COMMAND("ping", "guest"), 20);
    expect_limited(f, "visitor", "arq_client_1", COMMAND("ping", "guest"), 100,
                   "command rate limit: 10/s, burst 20");
}

static void test_sweep_frees_buckets_that_refilled(void **state)
{
    struct fx *f = *state;
    create(f, "");
    assert_int_equal(mock_host_timers_active(f->mh), 1);
    assert_int_equal(mock_host_timer_period(f->mh, 0, 1), RBAC_SWEEP_MS);
    char id[64];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "arq_client_%d", i);
        allow_n(f, "user", id, PUBLISH("chat", NULL), 2); /* full again 20 ms later */
    }
    allow_n(f, "user", "arq_client_busy", PUBLISH("chat", NULL), 200);
    assert_int_equal(rbac_tracked_clients(f->self), 501);
    f->now += 19 * MS;
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_clients(f->self), 501);
    f->now += 1 * MS;
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_clients(f->self), 1);
    /* The empty one needs 2 s to refill. */
    f->now += 2 * SEC;
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_clients(f->self), 0);
    /* A client refused within the abuse window is kept for its refusals. */
    allow_n(f, "user", "arq_client_x", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz_as(f, "user", NULL, NULL, "arq_client_x", PUBLISH("chat", NULL)),
                     ARQ_AUTH_RATE_LIMITED);
    f->now += 5 * SEC; /* full after 2 s, but refused 5 s ago (window 10 s) */
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_clients(f->self), 1);
    f->now += 5 * SEC;
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_clients(f->self), 0);
    /* stop ends the sweeping. */
    desc->stop(f->self);
    assert_int_equal(mock_host_timers_active(f->mh), 0);
    desc->destroy(f->self);
    f->self = NULL;
}

static void test_subject_bucket_is_shared_by_its_connections(void **state)
{
    struct fx *f = *state;
    create(f, "roles:\n  user:\n    limits: {subject_messages_per_second: 10, "
              "subject_messages_burst: 15}\n");
    for (int i = 0; i < 10; i++)
        assert_int_equal(authz_as(f, "user", "alice", NULL, "c1", PUBLISH("chat", NULL)),
                         ARQ_AUTH_ALLOW);
    for (int i = 0; i < 5; i++)
        assert_int_equal(authz_as(f, "user", "alice", NULL, "c2", DIRECT), ARQ_AUTH_ALLOW);
    assert_int_equal(authz_as(f, "user", "alice", NULL, "c2", PUBLISH("chat", NULL)),
                     ARQ_AUTH_RATE_LIMITED);
    assert_int_equal(f->out.retry_after_ms, 100);
    assert_string_equal(f->out.reason, "message rate limit per subject: 10/s, burst 15");
    assert_int_equal(authz_as(f, "user", "alice", NULL, "c3", PUBLISH("chat", NULL)),
                     ARQ_AUTH_RATE_LIMITED);
    /* The refusal took no token from the connection's own bucket: c2 has 195 left. */
    allow_n(f, "user", "c2", PUBLISH("chat", NULL), 195);
    expect_limited(f, "user", "c2", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
    f->now += 10 * SEC;
    for (int i = 0; i < 15; i++)
        assert_int_equal(authz_as(f, "user", "alice", NULL, "c2", PUBLISH("chat", NULL)),
                         ARQ_AUTH_ALLOW);
    /* Others: another subject, the same subject in another tenant, anonymous clients. */
    for (int i = 0; i < 15; i++) {
        assert_int_equal(authz_as(f, "user", "bob", NULL, "c4", PUBLISH("chat", NULL)),
                         ARQ_AUTH_ALLOW);
        assert_int_equal(authz_as(f, "user", "alice", "acme", "c5", PUBLISH("chat", NULL)),
                         ARQ_AUTH_ALLOW);
    }
    allow_n(f, "user", "c6", PUBLISH("chat", NULL), 200);
    assert_int_equal(rbac_tracked_subjects(f->self), 3);
    /* Commands are not counted per subject. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(authz_as(f, "user", "alice", NULL, "c7", COMMAND("ping", "guest")),
                         ARQ_AUTH_ALLOW);
    /* When the connection's own bucket waits longer, its limit is the one reported. */
    f->now += 10 * SEC;
    allow_n(f, "user", "c8", PUBLISH("chat", NULL), 200);
    assert_int_equal(authz_as(f, "user", "alice", NULL, "c8", PUBLISH("chat", NULL)),
                     ARQ_AUTH_RATE_LIMITED);
    assert_string_equal(f->out.reason, "message rate limit: 100/s, burst 200");
    /* Subject buckets are swept too. */
    f->now += 10 * SEC;
    mock_host_fire_timers(f->mh);
    assert_int_equal(rbac_tracked_subjects(f->self), 0);
}

static void test_start_takes_over_the_predecessors_buckets(void **state)
{
    struct fx *f = *state;
    create(f, "");
    allow_n(f, "user", "arq_client_1", PUBLISH("chat", NULL), 200);
    void *old = f->self;
    f->self = NULL;
    mock_host_create_plugin(f->mh, desc, mock_host_validate(desc->options, "", NULL), &f->self);
    rbac_set_clock(f->self, fx_clock, f);
    struct arq_error err = {""};
    assert_int_equal(desc->start(f->self, old, &err), ARQ_OK);
    desc->stop(old);
    desc->destroy(old);
    expect_limited(f, "user", "arq_client_1", PUBLISH("chat", NULL), 10,
                   "message rate limit: 100/s, burst 200");
}

/* The example of plugins/auth-rbac/README.md, as written there. */
static void test_readme_example_does_what_it_says(void **state)
{
    struct fx *f = *state;
    create(f, "unknown_role: deny\n"
              "abuse_threshold: 20\n"
              "abuse_window: 10s\n"
              "roles:\n"
              "  guest:\n"
              "    publish: [\"public*\", \"public*/*\"]\n"
              "  user:\n"
              "    publish: [\"**\", \"!announcements*\"]\n"
              "    limits:\n"
              "      messages_per_second: 50          # the burst stays 200\n"
              "      subject_messages_per_second: 300\n"
              "      subject_messages_burst: 600\n"
              "  moderator:\n"
              "    inherits: user\n"
              "    commands: [delete_channel, disconnect_client]\n"
              "  announcer:\n"
              "    inherits: admin\n"
              "    commands: [\"!reload\", \"!disconnect_client\"]\n"
              "    limits:\n"
              "      messages_per_minute: 60\n");
    expect_allow(f, "guest", PUBLISH("public-lobby", "news"));
    expect_deny(f, "user", PUBLISH("announcements", NULL),
                "role user may not publish to announcements");
    expect_deny(f, "moderator", PUBLISH("announcements", NULL),
                "role moderator may not publish to announcements");
    expect_allow(f, "moderator", COMMAND("disconnect_client", "admin"));
    expect_deny(f, "moderator", COMMAND("reload", "admin"),
                "role moderator may not run command reload");
    expect_allow(f, "announcer", PUBLISH("announcements", NULL));
    expect_allow(f, "announcer", COMMAND("delete_channel", "admin"));
    expect_deny(f, "announcer", COMMAND("disconnect_client", "admin"),
                "role announcer may not run command disconnect_client");
    allow_n(f, "announcer", "arq_client_2", PUBLISH("announcements", NULL), 60);
    expect_limited(f, "announcer", "arq_client_2", PUBLISH("announcements", NULL), 1000,
                   "message rate limit: 60/min, burst 60");
    allow_n(f, "user", "arq_client_3", PUBLISH("chat", NULL), 200);
    expect_limited(f, "user", "arq_client_3", PUBLISH("chat", NULL), 20,
                   "message rate limit: 50/s, burst 200");
}

static void test_config_errors_name_the_role_and_the_field(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *error;
    } cases[] = {
        {"roles: [a]", "roles: expected a map of role names to roles, got a list"},
        {"roles:\n  \"bad role\": {}",
         "roles: \"bad role\" is not a role name (1 to 64 letters, digits, '_', '.', '-')"},
        {"roles:\n  guest: [x]",
         "roles.guest: expected a map of fields (inherits, connect, commands, ...), got a list"},
        {"roles:\n  guest:\n    publsh: [x]",
         "roles.guest: unknown key \"publsh\" (did you mean \"publish\"?); allowed: inherits, "
         "connect, direct, commands, join, publish, history, limits"},
        {"roles:\n  guest:\n    connect: yes",
         "roles.guest.connect: expected true or false, got \"yes\""},
        {"roles:\n  guest:\n    join: public*",
         "roles.guest.join: expected a list of room or room/channel patterns, got \"public*\""},
        {"roles:\n  guest:\n    join: [\"public*\", 5]",
         "roles.guest.join[1]: expected a room or room/channel pattern, got 5"},
        {"roles:\n  guest:\n    join: [\"chat/a/b\"]",
         "roles.guest.join[0]: bad pattern \"chat/a/b\": a pattern is room or room/channel: at "
         "most one '/'"},
        {"roles:\n  guest:\n    history: [\"chat/**\"]",
         "roles.guest.history[0]: bad pattern \"chat/**\": \"**\" stands alone (it matches every "
         "room and channel); within a name use \"*\""},
        {"roles:\n  guest:\n    commands: [\"@admn\"]",
         "roles.guest.commands[0]: unknown command group \"@admn\" (did you mean \"@admin\"?); "
         "groups: @guest, @user, @admin"},
        {"roles:\n  guest:\n    commands: [ping, \"!\"]",
         "roles.guest.commands[1]: \"!\" needs a command name, \"@group\" or \"*\" after '!'"},
        {"roles:\n  guest:\n    commands: [\"do it\"]",
         "roles.guest.commands[0]: \"do it\" is not a command name (letters, digits, '_', '.', "
         "':', '-'), \"@group\" or \"*\""},
        {"roles:\n  mod:\n    inherits: usr",
         "roles.mod.inherits: unknown role \"usr\" (did you mean \"user\"?)"},
        {"roles:\n  mod:\n    inherits: [user]",
         "roles.mod.inherits: expected a role name, got a list"},
        {"roles:\n  a: {inherits: b}\n  b: {inherits: c}\n  c: {inherits: a}",
         "roles.a.inherits: inheritance cycle a -> b -> c -> a"},
        {"roles:\n  a: {inherits: a}", "roles.a.inherits: inheritance cycle a -> a"},
        {"roles:\n  user:\n    limits: {messages_per_second: -5}",
         "roles.user.limits.messages_per_second: must not be negative (0 means no limit), got -5"},
        {"roles:\n  user:\n    limits: {commands_per_minute: -1}",
         "roles.user.limits.commands_per_minute: must not be negative (0 means no limit), got -1"},
        {"roles:\n  user:\n    limits: {messages_per_second: 1.5}",
         "roles.user.limits.messages_per_second: expected a whole number, got 1.5"},
        {"roles:\n  user:\n    limits: {messages_per_second: fast}",
         "roles.user.limits.messages_per_second: expected a whole number, got \"fast\""},
        {"roles:\n  user:\n    limits: {messages_per_second: 2000000000}",
         "roles.user.limits.messages_per_second: must be at most 1000000000, got 2000000000"},
        {"roles:\n  user:\n    limits: {messages_burst: 0}",
         "roles.user.limits.messages_burst: must be at least 1, got 0"},
        {"roles:\n  user:\n    limits: {messages_per_second: 5, messages_per_minute: 300}",
         "roles.user.limits: give messages_per_second or messages_per_minute, not both"},
        {"roles:\n  user:\n    limits: {message_per_second: 5}",
         "roles.user.limits: unknown key \"message_per_second\" (did you mean "
         "\"messages_per_second\"?); allowed: messages_per_second, messages_per_minute, "
         "messages_burst, commands_per_second, commands_per_minute, commands_burst, "
         "subject_messages_per_second, subject_messages_per_minute, subject_messages_burst"},
        {"roles:\n  admin:\n    limits: {messages_burst: 5}",
         "roles.admin.limits.messages_burst: without a rate (messages_per_second or "
         "messages_per_minute) there is no limit for a burst to shape"},
        {"roles:\n  user:\n    limits: 100",
         "roles.user.limits: expected a map of limits, got 100"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct arq_error err = {""};
        const char *text = create_error(cases[i].yaml, &err);
        if (strcmp(text, cases[i].error) != 0)
            fail_msg("case %zu:\n  yaml: %s\n  got:  %s\n  want: %s", i, cases[i].yaml, text,
                     cases[i].error);
    }
}

static void test_options_are_checked_by_their_spec(void **state)
{
    (void)state;
    struct diag_list d = {0};
    assert_null(mock_host_validate(desc->options, "unknown_role: admin\n", &d));
    assert_true(d.n > 0);
    diag_clear(&d);
    assert_null(mock_host_validate(desc->options, "abuse_threshold: -1\n", &d));
    diag_clear(&d);
    json_t *cfg = mock_host_validate(desc->options, "", NULL);
    assert_int_equal(json_integer_value(json_object_get(cfg, "abuse_threshold")), 20);
    assert_int_equal(json_integer_value(json_object_get(cfg, "abuse_window")), 10000);
    assert_string_equal(json_string_value(json_object_get(cfg, "unknown_role")), "deny");
    assert_true(json_is_object(json_object_get(cfg, "roles")));
    json_decref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_starts_full_and_refills_at_its_rate),
        cmocka_unit_test(test_bucket_never_holds_more_than_its_burst),
        cmocka_unit_test(test_bucket_keeps_fractions_of_tokens_exactly),
        cmocka_unit_test(test_bucket_retry_after_is_the_exact_deficit),
        cmocka_unit_test(test_bucket_rate_change_keeps_tokens_clamped_to_the_new_burst),
        cmocka_unit_test(test_bucket_rate_zero_means_no_limit_burst_zero_refuses),
        cmocka_unit_test(test_bucket_survives_extremes_of_time_and_rate),
        cmocka_unit_test(test_bucket_full_tells_when_it_equals_a_new_one),
        cmocka_unit_test(test_glob_matches_runs_within_a_segment),
        cmocka_unit_test(test_patterns_match_rooms_and_channels_by_segment),
        cmocka_unit_test(test_deny_patterns_win_wherever_they_are_written),
        cmocka_unit_test(test_bad_patterns_are_refused_with_the_reason),
        cmocka_unit_test(test_limiter_sweep_frees_idle_entries_and_shrinks),
        cmocka_unit_test(test_limiter_keys_subjects_by_tenant),
        cmocka_unit_test(test_descriptor_exports_an_authorize_only_policy),
        cmocka_unit_test_setup_teardown(
            test_guest_may_connect_run_guest_commands_and_read_public_rooms, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_guest_may_not_publish_send_direct_or_leave_public_rooms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_may_do_all_but_admin_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admin_may_do_everything_without_limits, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_actions_are_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_user_message_bucket_refuses_past_the_burst_with_exact_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_command_bucket_is_10_per_second_burst_20, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refused_actions_take_no_token, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_limits_are_per_connection_and_not_for_server_side_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_yaml_field_replaces_only_that_field_of_a_builtin_role,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_rate_of_zero_removes_a_builtin_limit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_new_role_inherits_and_adds_to_the_lists, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_builtin_role_with_inherits_starts_from_the_parent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconfigure_applies_new_rates_to_existing_buckets,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_reconfigure_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abuse_threshold_marks_a_client_abusive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusals_spread_beyond_the_window_are_not_abuse, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unknown_role_is_denied_by_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_role_can_be_treated_as_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_frees_buckets_that_refilled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subject_bucket_is_shared_by_its_connections, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_start_takes_over_the_predecessors_buckets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readme_example_does_what_it_says, setup, teardown),
        cmocka_unit_test(test_config_errors_name_the_role_and_the_field),
        cmocka_unit_test(test_options_are_checked_by_their_spec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
