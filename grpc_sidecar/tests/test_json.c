/*
 * Unit tests of the JSON helpers (json.c): the plain-string check that lets
 * momd accept most message contents without a full parse must never accept
 * what jansson (the full check) refuses, nor change what the text means.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "json.h"

static bool
jansson_accepts_string(const void *data, size_t len)
{
    json_error_t error;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    bool ok = v != NULL && json_is_string(v);

    json_decref(v);
    return ok;
}

static void
check(const char *text, size_t len, bool plain)
{
    assert_int_equal(mom_json_is_plain_string(text, len), plain);
    if (plain) {
        assert_true(jansson_accepts_string(text, len));
    }
}

#define CHECK(lit, plain) check(lit, sizeof(lit) - 1, plain)

static void
test_accepts_plain_strings(void **state)
{
    (void)state;
    CHECK("\"\"", true);
    CHECK("\"hello world\"", true);
    CHECK("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", true);
    CHECK("\"\x7f\"", true);                     /* DEL is not a control here */
    CHECK("\"\xf4\x8f\xbf\xbf\"", true);         /* U+10FFFF */
    CHECK("\"\xed\x9f\xbf\xee\x80\x80\"", true); /* around the surrogates */
}

static void
test_leaves_the_rest_to_the_parser(void **state)
{
    (void)state;
    CHECK("", false);
    CHECK("\"", false);
    CHECK("\"abc", false);
    CHECK("abc\"", false);
    CHECK(" \"abc\"", false);  /* valid JSON, but not plain */
    CHECK("\"a\\nb\"", false); /* escapes go to jansson */
    CHECK("\"a\"b\"", false);
    CHECK("\"a\"\"", false);
    CHECK("{\"a\":\"b\"}", false);
    CHECK("42", false);
    CHECK("\"tab\there\"", false);
    check("\"nul\0\"", 6, false);
    CHECK("\"\xc0\xaf\"", false);         /* overlong '/' */
    CHECK("\"\xe0\x80\xaf\"", false);     /* overlong '/' */
    CHECK("\"\xf0\x80\x80\xaf\"", false); /* overlong '/' */
    CHECK("\"\xed\xa0\x80\"", false);     /* U+D800 */
    CHECK("\"\xed\xbf\xbf\"", false);     /* U+DFFF */
    CHECK("\"\xf4\x90\x80\x80\"", false); /* U+110000 */
    CHECK("\"\xf5\x80\x80\x80\"", false);
    CHECK("\"\xff\"", false);
    CHECK("\"\x80\"", false); /* lone continuation */
    CHECK("\"\xc3\"", false); /* truncated before the quote */
    CHECK("\"\xe2\x82\"", false);
    CHECK("\"\xc3\x28\"", false); /* bad continuation */
}

/* Every string of up to 3 bytes between quotes (all 16M of them would be
 * slow: every 1- and 2-byte body, and 3-byte bodies on a stride): plain
 * implies jansson accepts it as a string. */
static void
test_never_wider_than_jansson(void **state)
{
    uint8_t buf[5] = {'"'};
    unsigned long v, accepted = 0;

    (void)state;
    for (v = 0; v < 0x1000000UL; v += (v < 0x10000UL ? 1 : 97)) {
        size_t n = v < 0x100UL ? 1 : v < 0x10000UL ? 2 : 3;

        for (size_t i = 0; i < n; i++) {
            buf[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
        }
        buf[1 + n] = '"';
        if (mom_json_is_plain_string(buf, n + 2)) {
            accepted++;
            assert_true(jansson_accepts_string(buf, n + 2));
        }
    }
    assert_true(accepted > 10000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_plain_strings),
        cmocka_unit_test(test_leaves_the_rest_to_the_parser),
        cmocka_unit_test(test_never_wider_than_jansson),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
