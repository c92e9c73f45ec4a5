/*
 * Unit tests of password hashing (auth.c): hash/verify, wrong password,
 * tampered or malformed hash strings, random salts, and the thread-pool
 * wrappers on a real libuv loop. Low iteration counts for speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"

#define ITER 1000

static void
test_hash_verify(void **state)
{
    char hash[MOM_AUTH_HASH_MAX];

    assert_int_equal(mom_auth_hash("s3cret", 6, ITER, hash), 0);
    assert_memory_equal(hash, "pbkdf2_sha256$1000$", 19);
    assert_true(mom_auth_verify("s3cret", 6, hash));
    assert_false(mom_auth_verify("s3creT", 6, hash));
    assert_false(mom_auth_verify("s3cre", 5, hash));
    assert_false(mom_auth_verify("", 0, hash));
    /* No plaintext in the encoding. */
    assert_null(strstr(hash, "s3cret"));
}

static void
test_salted(void **state)
{
    char a[MOM_AUTH_HASH_MAX], b[MOM_AUTH_HASH_MAX];

    mom_auth_hash("same", 4, ITER, a);
    mom_auth_hash("same", 4, ITER, b);
    assert_string_not_equal(a, b);
    assert_true(mom_auth_verify("same", 4, a));
    assert_true(mom_auth_verify("same", 4, b));
}

/* A known PBKDF2-HMAC-SHA256 vector (RFC 7914 section 11, c=1, 64-byte
 * output truncated to our 32): P="passwd", S="salt". */
static void
test_known_vector(void **state)
{
    const char *encoded = "pbkdf2_sha256$1$c2FsdA==$"
                          "VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw=";

    assert_true(mom_auth_verify("passwd", 6, encoded));
    assert_false(mom_auth_verify("passwe", 6, encoded));
}

static void
test_tampered(void **state)
{
    char hash[MOM_AUTH_HASH_MAX], bad[MOM_AUTH_HASH_MAX + 8];
    char *last;

    mom_auth_hash("pw", 2, ITER, hash);

    /* Every single-character change of the encoding is rejected. */
    for (size_t i = 0; hash[i] != '\0'; i++) {
        strcpy(bad, hash);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_false(mom_auth_verify("pw", 2, bad));
    }
    /* Other iteration count. */
    strcpy(bad, hash);
    memcpy(bad + strlen("pbkdf2_sha256$"), "1001", 4);
    assert_false(mom_auth_verify("pw", 2, bad));
    /* Truncated hash. */
    strcpy(bad, hash);
    last = strrchr(bad, '$');
    last[5] = '\0';
    assert_false(mom_auth_verify("pw", 2, bad));

    assert_false(mom_auth_verify("pw", 2, NULL));
    assert_false(mom_auth_verify("pw", 2, ""));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$"));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$0$AAAA$AAAA"));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$-5$AAAA$AAAA"));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$1$$"));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$1$AAAA"));
    assert_false(mom_auth_verify("pw", 2, "pbkdf2_sha256$1$!!!!$AAAA"));
    /* An absurd iteration count is refused rather than computed. */
    assert_false(
        mom_auth_verify("pw", 2,
                        "pbkdf2_sha256$4000000000$c2FsdA==$"
                        "VawEblbjCJ/sFpHCJUS2BflBhSFt3gRl5oudV8INrLw="));
    assert_false(mom_auth_verify("pw", 2, "sha1$1$c2FsdA==$AAAA"));
}

typedef struct {
    char hash[MOM_AUTH_HASH_MAX];
    int hashed;
    int verified_ok;
    int verified_bad;
    int verified_unknown;
} async_state_t;

static void
on_hash(void *data, const char *hash)
{
    async_state_t *s = data;

    assert_non_null(hash);
    strcpy(s->hash, hash);
    s->hashed++;
}

static void
on_verify_ok(void *data, bool ok)
{
    ((async_state_t *)data)->verified_ok += ok ? 1 : 100;
}

static void
on_verify_bad(void *data, bool ok)
{
    ((async_state_t *)data)->verified_bad += ok ? 100 : 1;
}

static void
on_verify_unknown(void *data, bool ok)
{
    ((async_state_t *)data)->verified_unknown += ok ? 100 : 1;
}

static void
test_async(void **state)
{
    uv_loop_t loop;
    async_state_t s = {0};
    char password[] = "correct horse";

    uv_loop_init(&loop);
    assert_int_equal(mom_auth_hash_async(&loop, password, strlen(password),
                                         ITER, on_hash, &s),
                     0);
    /* The caller may wipe its copy at once. */
    memset(password, 0, sizeof(password));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.hashed, 1);

    mom_auth_verify_async(&loop, "correct horse", 13, s.hash, ITER,
                          on_verify_ok, &s);
    mom_auth_verify_async(&loop, "wrong horse", 11, s.hash, ITER, on_verify_bad,
                          &s);
    mom_auth_verify_async(&loop, "correct horse", 13, NULL, ITER,
                          on_verify_unknown, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(s.verified_ok, 1);
    assert_int_equal(s.verified_bad, 1);
    assert_int_equal(s.verified_unknown, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_verify),  cmocka_unit_test(test_salted),
        cmocka_unit_test(test_known_vector), cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_async),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
