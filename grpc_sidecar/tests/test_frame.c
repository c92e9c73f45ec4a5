/*
 * Unit tests of the frame codec (frame.c): round trips, input split at
 * every byte boundary, zero and oversized lengths, garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "mom.pb-c.h"

#define MAX_FRAME 4096

static mom_frame_t *
encode_reply(unsigned status, const char *body)
{
    Mom__Response resp = MOM__RESPONSE__INIT;

    resp.status = status;
    resp.body.data = (uint8_t *)body;
    resp.body.len = strlen(body);
    return mom_frame_encode(&resp.base, MAX_FRAME);
}

static void
check_reply(const uint8_t *payload, size_t len, unsigned status,
            const char *body)
{
    Mom__Response *resp = mom__response__unpack(NULL, len, payload);

    assert_non_null(resp);
    assert_int_equal(resp->status, status);
    assert_int_equal(resp->body.len, strlen(body));
    assert_memory_equal(resp->body.data, body, strlen(body));
    mom__response__free_unpacked(resp, NULL);
}

static void
test_encode_header(void **state)
{
    mom_frame_t *f = encode_reply(200, "{}");
    size_t n;

    assert_non_null(f);
    n = f->len - MOM_FRAME_HEADER;
    assert_int_equal(f->data[0], (n >> 24) & 0xff);
    assert_int_equal(f->data[1], (n >> 16) & 0xff);
    assert_int_equal(f->data[2], (n >> 8) & 0xff);
    assert_int_equal(f->data[3], n & 0xff);
    check_reply(f->data + MOM_FRAME_HEADER, n, 200, "{}");
    assert_ptr_equal(mom_frame_ref(f), f);
    assert_int_equal(f->refs, 2);
    mom_frame_unref(f);
    mom_frame_unref(f);
}

static void
test_encode_limits(void **state)
{
    Mom__Response empty = MOM__RESPONSE__INIT;
    char *big = malloc(MAX_FRAME + 1);

    /* An all-default message packs to 0 bytes: not a valid frame. */
    assert_null(mom_frame_encode(&empty.base, MAX_FRAME));
    memset(big, 'x', MAX_FRAME);
    big[MAX_FRAME] = '\0';
    assert_null(encode_reply(200, big));
    free(big);
}

/* Three frames concatenated, fed in two pieces split at every offset. */
static void
test_split_everywhere(void **state)
{
    const char *bodies[] = {"a", "{\"message\":\"hello\"}", ""};
    uint8_t stream[512];
    size_t total = 0;

    for (int i = 0; i < 3; i++) {
        mom_frame_t *f = encode_reply(200 + i, bodies[i]);
        memcpy(stream + total, f->data, f->len);
        total += f->len;
        mom_frame_unref(f);
    }
    for (size_t split = 0; split <= total; split++) {
        mom_frame_decoder_t d;
        const uint8_t *payload;
        size_t len;
        int got = 0;

        mom_frame_decoder_init(&d, MAX_FRAME);
        assert_int_equal(mom_frame_decoder_feed(&d, stream, split), 0);
        while (mom_frame_decoder_next(&d, &payload, &len) == 1) {
            check_reply(payload, len, 200 + got, bodies[got]);
            got++;
        }
        assert_int_equal(
            mom_frame_decoder_feed(&d, stream + split, total - split), 0);
        while (mom_frame_decoder_next(&d, &payload, &len) == 1) {
            check_reply(payload, len, 200 + got, bodies[got]);
            got++;
        }
        assert_int_equal(got, 3);
        assert_int_equal(mom_frame_decoder_buffered(&d), 0);
        mom_frame_decoder_free(&d);
    }
}

/* One byte at a time. */
static void
test_byte_by_byte(void **state)
{
    mom_frame_t *f = encode_reply(404, "{\"detail\":\"Topic not found\"}");
    mom_frame_decoder_t d;
    const uint8_t *payload;
    size_t len;

    mom_frame_decoder_init(&d, MAX_FRAME);
    for (size_t i = 0; i < f->len; i++) {
        assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), 0);
        assert_int_equal(mom_frame_decoder_feed(&d, f->data + i, 1), 0);
    }
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), 1);
    check_reply(payload, len, 404, "{\"detail\":\"Topic not found\"}");
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), 0);
    mom_frame_decoder_free(&d);
    mom_frame_unref(f);
}

static void
test_zero_length(void **state)
{
    static const uint8_t zero[] = {0, 0, 0, 0, 1, 2, 3};
    mom_frame_decoder_t d;
    const uint8_t *payload;
    size_t len;

    mom_frame_decoder_init(&d, MAX_FRAME);
    mom_frame_decoder_feed(&d, zero, sizeof(zero));
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), -1);
    /* The error is sticky. */
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), -1);
    assert_int_equal(mom_frame_decoder_feed(&d, zero, 1), -1);
    mom_frame_decoder_free(&d);
}

static void
test_oversized(void **state)
{
    uint8_t hdr[4] = {0, 0, (MAX_FRAME + 1) >> 8, (MAX_FRAME + 1) & 0xff};
    uint8_t max_hdr[4] = {0, 0, MAX_FRAME >> 8, MAX_FRAME & 0xff};
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    mom_frame_decoder_t d;
    const uint8_t *payload;
    size_t len;

    /* Rejected as soon as the header is known, before any payload. */
    mom_frame_decoder_init(&d, MAX_FRAME);
    mom_frame_decoder_feed(&d, hdr, sizeof(hdr));
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), -1);
    mom_frame_decoder_free(&d);

    mom_frame_decoder_init(&d, MAX_FRAME);
    mom_frame_decoder_feed(&d, huge, sizeof(huge));
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), -1);
    mom_frame_decoder_free(&d);

    /* Exactly max is accepted. */
    mom_frame_decoder_init(&d, MAX_FRAME);
    mom_frame_decoder_feed(&d, max_hdr, sizeof(max_hdr));
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), 0);
    for (int i = 0; i < MAX_FRAME; i++) {
        mom_frame_decoder_feed(&d, "z", 1);
    }
    assert_int_equal(mom_frame_decoder_next(&d, &payload, &len), 1);
    assert_int_equal(len, MAX_FRAME);
    mom_frame_decoder_free(&d);
}

/* Random bytes: the decoder returns frames or an error, never crashes, and
 * whatever it returns unpacks or fails cleanly. */
static void
test_garbage(void **state)
{
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        mom_frame_decoder_t d;
        uint8_t junk[64];
        const uint8_t *payload;
        size_t len;
        int rc;

        for (size_t i = 0; i < sizeof(junk); i++) {
            junk[i] = (uint8_t)rand();
        }
        /* Small lengths so that some frames complete. */
        junk[0] = junk[1] = junk[2] = 0;
        junk[3] %= 16;
        mom_frame_decoder_init(&d, MAX_FRAME);
        mom_frame_decoder_feed(&d, junk, sizeof(junk));
        while ((rc = mom_frame_decoder_next(&d, &payload, &len)) == 1) {
            Mom__Request *req = mom__request__unpack(NULL, len, payload);
            if (req != NULL) {
                mom__request__free_unpacked(req, NULL);
            }
        }
        assert_true(rc == 0 || rc == -1);
        mom_frame_decoder_free(&d);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_header),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_split_everywhere),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
