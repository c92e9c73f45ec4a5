/*
 * Unit tests of the momd.conf parser (conf.c) and the JSON writer (json.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"
#include "json.h"

static void
test_defaults_and_keys(void **state)
{
    mom_conf_t c;
    char err[128];

    mom_conf_defaults(&c);
    assert_int_equal(mom_conf_parse(&c,
                                    "# comment\n"
                                    "socket = /run/mom.sock\n"
                                    "\n"
                                    "data_dir=/var/lib/mom  # trailing\n",
                                    err, sizeof(err)),
                     0);
    assert_string_equal(c.socket_path, "/run/mom.sock");
    assert_string_equal(c.data_dir, "/var/lib/mom");
    assert_int_equal(c.node_id, 1);
    assert_int_equal(c.synchronous, MOM_SYNC_FULL);
    assert_int_equal(c.pbkdf2_iterations, 600000);
    assert_int_equal(c.max_frame_size, 4194304);
    assert_int_equal(c.sse_buffer, 1048576);
    assert_int_equal(c.heartbeat_ms, 15000);
    assert_int_equal(c.log_level, MOM_LOG_INFO);
    assert_int_equal(c.partitions, 64);
    assert_int_equal(c.replicas, 3);
    assert_int_equal(c.snapshot_threshold, 1024);
    assert_int_equal(c.snapshot_trailing, 128);
    assert_int_equal(c.snapshot_trailing_bytes, 67108864);
    assert_int_equal(c.n_members, 0);
    mom_conf_free(&c);

    mom_conf_defaults(&c);
    assert_int_equal(
        mom_conf_parse(&c,
                       "node_id = 2\nsocket = s\ndata_dir = d\n"
                       "synchronous = normal\npbkdf2_iterations = 1000\n"
                       "max_frame_size = 1048576\nsse_buffer = 65536\n"
                       "heartbeat_ms = 500\nlog_level = debug\n"
                       "member = 1 127.0.0.1:7001 127.0.0.1:8001\n"
                       "member = 2  127.0.0.1:7002\t127.0.0.1:8002\n"
                       "partitions = 16\nreplicas = 2\n"
                       "snapshot_trailing_bytes = 0\n",
                       err, sizeof(err)),
        0);
    assert_int_equal(c.node_id, 2);
    assert_int_equal(c.synchronous, MOM_SYNC_NORMAL);
    assert_int_equal(c.pbkdf2_iterations, 1000);
    assert_int_equal(c.max_frame_size, 1048576);
    assert_int_equal(c.sse_buffer, 65536);
    assert_int_equal(c.heartbeat_ms, 500);
    assert_int_equal(c.log_level, MOM_LOG_DEBUG);
    assert_int_equal(c.n_members, 2);
    assert_int_equal(c.members[1].id, 2);
    assert_string_equal(c.members[1].grpc_addr, "127.0.0.1:7002");
    assert_string_equal(c.members[1].rest_addr, "127.0.0.1:8002");
    assert_int_equal(c.partitions, 16);
    assert_int_equal(c.replicas, 2);
    assert_int_equal(c.snapshot_trailing_bytes, 0);
    mom_conf_free(&c);
}

static void
expect_error(const char *text, const char *want)
{
    mom_conf_t c;
    char err[128] = "";

    mom_conf_defaults(&c);
    assert_int_equal(mom_conf_parse(&c, text, err, sizeof(err)), -1);
    if (strstr(err, want) == NULL) {
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    }
    mom_conf_free(&c);
}

static void
test_errors(void **state)
{
    expect_error("socket = s\ndata_dir = d\nfoo = 1\n",
                 "line 3: unknown key \"foo\"");
    expect_error("socket = s\njust words\n", "line 2: expected");
    expect_error("data_dir = d\n", "\"socket\" is required");
    expect_error("socket = s\n", "\"data_dir\" is required");
    expect_error("node_id = 0\n", "line 1: invalid value");
    expect_error("node_id = -1\n", "invalid value");
    expect_error("node_id = 1x\n", "invalid value");
    expect_error("synchronous = off\n", "invalid value");
    expect_error("log_level = loud\n", "invalid value");
    expect_error("pbkdf2_iterations = 99999999999999999999\n", "invalid value");
    expect_error("max_frame_size = 100\n", "invalid value");
    expect_error("socket =\n", "invalid value");
    expect_error("member = 1 127.0.0.1:7001\n", "invalid value");
    expect_error("member = 1 a:1 b:2 c\n", "invalid value");
    expect_error("member = 1 nohostport b:2\n", "invalid value");
    expect_error("member = 1 a:70000 b:2\n", "invalid value");
    expect_error("member = 1 a:1 b:2\nmember = 1 a:3 b:4\n",
                 "line 2: invalid value");
    expect_error("node_id = 3\nsocket = s\ndata_dir = d\n"
                 "member = 1 a:1 b:2\n",
                 "not among the members");
}

static void
test_json_escaping(void **state)
{
    mom_buf_t b;

    mom_buf_init(&b);
    mom_json_str(&b, "a\"b\\c\n\r\t\b\f\x01\x1f/\xc3\xa9", 15);
    mom_buf_append(&b, "", 1);
    assert_string_equal(
        b.data, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f/\xc3\xa9\"");
    mom_buf_reset(&b);
    mom_json_str(&b, "x\0y", 3);
    mom_buf_append(&b, "", 1);
    assert_string_equal(b.data, "\"x\\u0000y\"");
    mom_buf_reset(&b);
    mom_json_detail(&b, "Topic \"x\" not found");
    mom_buf_append(&b, "", 1);
    assert_string_equal(b.data, "{\"detail\":\"Topic \\\"x\\\" not found\"}");
    mom_buf_free(&b);
}

static void
test_json_message(void **state)
{
    mom_buf_t b;

    mom_buf_init(&b);
    mom_json_message(&b, "offset", 18446744073709551615ULL, "u", 1,
                     "{\"a\":[1]}", 9, 1795703915123LL);
    mom_buf_append(&b, "", 1);
    assert_string_equal(b.data, "{\"offset\":18446744073709551615,"
                                "\"sender\":\"u\",\"content\":{\"a\":[1]},"
                                "\"timestamp\":\"2026-11-26T14:38:35.123Z\"}");
    mom_buf_reset(&b);
    mom_json_timestamp(&b, 0);
    mom_json_timestamp(&b, -1);
    mom_buf_append(&b, "", 1);
    assert_string_equal(b.data, "\"1970-01-01T00:00:00.000Z\""
                                "\"1969-12-31T23:59:59.999Z\"");
    mom_buf_free(&b);
}

static void
test_buf_growth(void **state)
{
    mom_buf_t b;

    mom_buf_init(&b);
    for (int i = 0; i < 100000; i++) {
        mom_buf_append(&b, "0123456789", 10);
    }
    assert_false(b.failed);
    assert_int_equal(b.len, 1000000);
    assert_memory_equal(b.data + 999990, "0123456789", 10);
    mom_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_json_message),
        cmocka_unit_test(test_buf_growth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
