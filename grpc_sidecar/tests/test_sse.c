/*
 * Tests of subscriptions (sse.c) through the whole in-process request path
 * (server.c, ops.c, commit.c, sm.c, store.c) on a real libuv loop, a real
 * Unix socket and a real SQLite file; the client side is a plain blocking
 * socket polled between loop iterations.
 */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "commit.h"
#include "ops.h"
#include "placement.h"
#include "server.h"
#include "sse.h"
#include "store.h"

typedef struct {
    char dir[64];
    char sock[128];
    uv_loop_t loop;
    mom_conf_t conf;
    mom_store_t *st;
    mom_sse_t *sse;
    mom_placement_t *pl;
    mom_commit_t *commit;
    mom_ops_t ops;
    mom_server_t *server;
} daemon_t;

typedef struct {
    int fd;
    mom_frame_decoder_t dec;
} client_t;

static daemon_t *D;

static int
setup(void **state)
{
    daemon_t *d = calloc(1, sizeof(*d));
    char err[256];

    strcpy(d->dir, "/tmp/mom-test-sse-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->sock, sizeof(d->sock), "%s/momd.sock", d->dir);
    uv_loop_init(&d->loop);
    mom_conf_defaults(&d->conf);
    d->conf.pbkdf2_iterations = 1000;
    d->conf.sse_buffer = 64 * 1024;
    d->st = mom_store_open(d->dir, MOM_SYNC_NORMAL, err, sizeof(err));
    assert_non_null(d->st);
    d->sse = mom_sse_new(&d->loop, &d->conf, d->st);
    assert_non_null(d->sse);
    d->pl = mom_placement_new(&d->conf);
    assert_non_null(d->pl);
    d->commit = mom_commit_new(&d->loop, d->st, &d->conf, d->pl,
                               mom_sse_applied, d->sse);
    assert_non_null(d->commit);
    mom_ops_init(&d->ops, &d->loop, &d->conf, d->st, d->pl, d->commit);
    d->ops.sse = d->sse;
    d->server = mom_server_new(&d->loop, &d->conf, mom_ops_handle, &d->ops);
    assert_int_equal(mom_server_listen(d->server, d->sock), 0);
    D = d;
    *state = d;
    return 0;
}

static int
teardown(void **state)
{
    daemon_t *d = *state;
    char cmd[128];

    mom_server_close(d->server);
    mom_ops_close(&d->ops);
    mom_commit_close(d->commit);
    mom_sse_shutdown(d->sse);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&d->loop), 0);
    mom_store_close(d->st);
    mom_placement_free(d->pl);
    mom_conf_free(&d->conf);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
    assert_int_equal(system(cmd), 0);
    free(d);
    return 0;
}

static void
client_open(client_t *c)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};

    strcpy(addr.sun_path, D->sock);
    c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    mom_frame_decoder_init(&c->dec, 1 << 24);
}

static void
client_close(client_t *c)
{
    close(c->fd);
    mom_frame_decoder_free(&c->dec);
}

static void
client_send(client_t *c, Mom__Request *req)
{
    size_t n = mom__request__get_packed_size(req);
    uint8_t *buf = malloc(n + 4);

    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    mom__request__pack(req, buf + 4);
    assert_int_equal(write(c->fd, buf, n + 4), (ssize_t)(n + 4));
    free(buf);
}

static int64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs the loop until a frame arrives (NULL on EOF or after timeout_ms). */
static Mom__Response *
client_recv(client_t *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    const uint8_t *payload;
    size_t len;
    uint8_t buf[65536];

    for (;;) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        ssize_t n;

        if (mom_frame_decoder_next(&c->dec, &payload, &len) == 1) {
            return mom__response__unpack(NULL, len, payload);
        }
        if (now_ms() > deadline) {
            return NULL;
        }
        uv_run(&D->loop, UV_RUN_NOWAIT);
        if (poll(&p, 1, 1) <= 0) {
            continue;
        }
        n = read(c->fd, buf, sizeof(buf));
        if (n <= 0) {
            return NULL;
        }
        mom_frame_decoder_feed(&c->dec, buf, (size_t)n);
    }
}

/* One request, one reply; returns the status and frees the reply. */
static unsigned
call(client_t *c, Mom__Op op, const char *name, const char *content)
{
    Mom__Request req = MOM__REQUEST__INIT;
    Mom__Response *resp;
    unsigned status;

    req.op = op;
    req.name = (char *)name;
    req.user = "alice";
    if (content != NULL) {
        req.content.data = (uint8_t *)content;
        req.content.len = strlen(content);
    }
    client_send(c, &req);
    resp = client_recv(c, 5000);
    assert_non_null(resp);
    status = resp->status;
    mom__response__free_unpacked(resp, NULL);
    return status;
}

static void
subscribe(client_t *c, const char *name, bool has_since, uint64_t since,
          int64_t token_exp, unsigned want_status)
{
    Mom__Request req = MOM__REQUEST__INIT;
    Mom__Response *resp;

    client_open(c);
    req.op = MOM__OP__OP_SUBSCRIBE;
    req.name = (char *)name;
    req.has_since = has_since;
    req.since = since;
    req.token_exp = token_exp;
    req.heartbeat_ms = 150;
    client_send(c, &req);
    resp = client_recv(c, 5000);
    assert_non_null(resp);
    assert_int_equal(resp->kind, MOM__KIND__KIND_REPLY);
    assert_int_equal(resp->status, want_status);
    mom__response__free_unpacked(resp, NULL);
    if (want_status != 200) {
        return;
    }
    resp = client_recv(c, 5000);
    assert_non_null(resp);
    assert_int_equal(resp->kind, MOM__KIND__KIND_EVENT);
    assert_int_equal(resp->body.len, strlen("retry: 3000\n\n"));
    assert_memory_equal(resp->body.data, "retry: 3000\n\n", resp->body.len);
    mom__response__free_unpacked(resp, NULL);
}

/* Next frame that is not a heartbeat; its kind and text into out. */
static Mom__Kind
next_event(client_t *c, char *out, size_t size)
{
    for (;;) {
        Mom__Response *resp = client_recv(c, 5000);
        Mom__Kind kind;

        assert_non_null(resp);
        if (resp->body.len == 8 &&
            memcmp(resp->body.data, ": ping\n\n", 8) == 0) {
            mom__response__free_unpacked(resp, NULL);
            continue;
        }
        kind = resp->kind;
        snprintf(out, size, "%.*s", (int)resp->body.len,
                 (const char *)resp->body.data);
        mom__response__free_unpacked(resp, NULL);
        return kind;
    }
}

static uint64_t
event_id(const char *text)
{
    assert_memory_equal(text, "id: ", 4);
    return strtoull(text + 4, NULL, 10);
}

static void
test_format(void **state)
{
    mom_store_msg_t m = {.seq = 7,
                         .sender = "u",
                         .sender_len = 1,
                         .content = "{\"a\":\"b\"}",
                         .content_len = 9,
                         .ts_ms = 1795703915123LL};
    mom_buf_t b;

    mom_buf_init(&b);
    mom_sse_format_message(&b, &m);
    mom_sse_format_end(&b, "token expired");
    mom_buf_append(&b, "", 1);
    assert_string_equal(
        b.data, "id: 7\ndata: {\"offset\":7,\"sender\":\"u\",\"content\":{"
                "\"a\":\"b\"},\"timestamp\":\"2026-11-26T14:38:35.123Z\"}\n\n"
                "event: end\ndata: {\"reason\":\"token expired\"}\n\n");
    mom_buf_free(&b);
}

static void
test_live_and_delete(void **state)
{
    client_t pub, sub;
    char text[512];

    client_open(&pub);
    subscribe(&sub, "t", false, 0, 0, 404);
    assert_int_equal(call(&sub, MOM__OP__OP_LIST_TOPICS, NULL, NULL), 200);
    client_close(&sub);

    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "t", NULL), 200);
    assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "t", "\"before\""), 200);
    subscribe(&sub, "t", false, 0, 0, 200);
    assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "t", "\"after\""), 200);
    assert_int_equal(next_event(&sub, text, sizeof(text)),
                     MOM__KIND__KIND_EVENT);
    assert_int_equal(event_id(text), 2);
    assert_non_null(strstr(text, "\"content\":\"after\""));

    assert_int_equal(call(&pub, MOM__OP__OP_DELETE_TOPIC, "t", NULL), 200);
    assert_int_equal(next_event(&sub, text, sizeof(text)), MOM__KIND__KIND_END);
    assert_string_equal(text,
                        "event: end\ndata: {\"reason\":\"topic deleted\"}\n\n");
    assert_null(client_recv(&sub, 1000));
    assert_int_equal(mom_sse_count(D->sse), 0);
    client_close(&sub);
    client_close(&pub);
}

static void
test_replay_then_live(void **state)
{
    client_t pub, sub;
    char text[512], num[16];
    uint64_t want = 4;

    client_open(&pub);
    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "r", NULL), 200);
    for (int i = 1; i <= 600; i++) {
        snprintf(num, sizeof(num), "%d", i);
        assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "r", num), 200);
    }
    subscribe(&sub, "r", true, 3, 0, 200);
    /* Publish while the replay is in progress. */
    for (int i = 601; i <= 700; i++) {
        snprintf(num, sizeof(num), "%d", i);
        assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "r", num), 200);
    }
    while (want <= 700) {
        assert_int_equal(next_event(&sub, text, sizeof(text)),
                         MOM__KIND__KIND_EVENT);
        assert_int_equal(event_id(text), want);
        want++;
    }
    assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "r", "701"), 200);
    next_event(&sub, text, sizeof(text));
    assert_int_equal(event_id(text), 701);
    client_close(&sub);
    client_close(&pub);
    /* The closed subscriber is noticed without writing to it. */
    for (int i = 0; i < 20 && mom_sse_count(D->sse) > 0; i++) {
        uv_run(&D->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    assert_int_equal(mom_sse_count(D->sse), 0);
}

static void
test_token_expiry_and_heartbeat(void **state)
{
    client_t pub, sub, late;
    Mom__Response *resp;
    char text[256];
    int64_t t0;

    client_open(&pub);
    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "x", NULL), 200);
    subscribe(&sub, "x", false, 0, time(NULL) + 2, 200);
    resp = client_recv(&sub, 1000);
    assert_non_null(resp);
    assert_int_equal(resp->body.len, 8);
    assert_memory_equal(resp->body.data, ": ping\n\n", 8);
    mom__response__free_unpacked(resp, NULL);
    t0 = now_ms();
    assert_int_equal(next_event(&sub, text, sizeof(text)), MOM__KIND__KIND_END);
    assert_true(now_ms() - t0 < 3000);
    assert_string_equal(text,
                        "event: end\ndata: {\"reason\":\"token expired\"}\n\n");
    client_close(&sub);

    subscribe(&late, "x", false, 0, time(NULL) - 1, 200);
    assert_int_equal(next_event(&late, text, sizeof(text)),
                     MOM__KIND__KIND_END);
    client_close(&late);
    client_close(&pub);
}

static void
test_slow_subscriber(void **state)
{
    client_t pub, sub;
    char *big = malloc(20002);
    Mom__Response *resp, *last = NULL;
    int rcvbuf = 4096;

    memset(big, 'z', 20002);
    big[0] = '"';
    big[20000] = '"';
    big[20001] = '\0';
    client_open(&pub);
    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "s", NULL), 200);
    subscribe(&sub, "s", false, 0, 0, 200);
    setsockopt(sub.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "s", big), 200);
    }
    while ((resp = client_recv(&sub, 3000)) != NULL) {
        if (last != NULL) {
            mom__response__free_unpacked(last, NULL);
        }
        last = resp;
    }
    assert_non_null(last);
    assert_int_equal(last->kind, MOM__KIND__KIND_END);
    assert_non_null(
        memmem(last->body.data, last->body.len, "subscriber too slow", 19));
    mom__response__free_unpacked(last, NULL);
    client_close(&sub);
    client_close(&pub);
    free(big);
}

/*
 * Events bigger than the socket buffer, to a subscriber that is not reading:
 * the first write goes out only in part and the rest of it, and the next
 * events, wait in the write queue; once the subscriber reads, every event
 * arrives whole and in order.
 */
static void
test_partial_writes_keep_order(void **state)
{
    enum { N = 8, SIZE = 100 * 1000 };
    client_t pub, sub;
    char *big = malloc(SIZE + 3);
    Mom__Response *resp;
    uint64_t want = 1;

    D->conf.sse_buffer = 4 * 1024 * 1024;
    client_open(&pub);
    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "p", NULL), 200);
    subscribe(&sub, "p", false, 0, 0, 200);
    for (int i = 0; i < N; i++) {
        memset(big, 'a' + i, SIZE + 2);
        big[0] = '"';
        big[SIZE + 1] = '"';
        big[SIZE + 2] = '\0';
        assert_int_equal(call(&pub, MOM__OP__OP_PUBLISH, "p", big), 200);
    }
    while (want <= N && (resp = client_recv(&sub, 5000)) != NULL) {
        const char *text = (const char *)resp->body.data;
        size_t len = resp->body.len;

        if (len == 8 && memcmp(text, ": ping\n\n", 8) == 0) {
            mom__response__free_unpacked(resp, NULL);
            continue;
        }
        assert_int_equal(resp->kind, MOM__KIND__KIND_EVENT);
        assert_true(len > SIZE);
        assert_int_equal(event_id(text), want);
        /* the content is SIZE times the same letter, whole */
        memset(big, 'a' + (int)(want - 1), SIZE);
        assert_non_null(memmem(text, len, big, SIZE));
        mom__response__free_unpacked(resp, NULL);
        want++;
    }
    assert_int_equal(want, N + 1);
    client_close(&sub);
    client_close(&pub);
    free(big);
}

static void
test_shutdown_ends_streams(void **state)
{
    client_t pub, sub;
    char text[256];

    client_open(&pub);
    assert_int_equal(call(&pub, MOM__OP__OP_CREATE_TOPIC, "d", NULL), 200);
    subscribe(&sub, "d", false, 0, 0, 200);
    mom_sse_shutdown(D->sse);
    D->sse = mom_sse_new(&D->loop, &D->conf, D->st); /* for teardown */
    D->ops.sse = D->sse;
    mom_commit_on_applied(D->commit, mom_sse_applied, D->sse);
    assert_int_equal(next_event(&sub, text, sizeof(text)), MOM__KIND__KIND_END);
    assert_string_equal(
        text, "event: end\ndata: {\"reason\":\"server shutting down\"}\n\n");
    client_close(&sub);
    client_close(&pub);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test_setup_teardown(test_live_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_then_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_expiry_and_heartbeat, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_slow_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_writes_keep_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_streams, setup,
                                        teardown),
    };

    /* as momd does: a write to a subscriber that has gone is an EPIPE */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
