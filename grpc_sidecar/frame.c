/*
 * Frame decoding and encoding. The decoder is pure (no I/O) so that it can
 * be tested by splitting input at every byte boundary.
 */
#include <stdlib.h>
#include <string.h>

#include "frame.h"

void
mom_frame_decoder_init(mom_frame_decoder_t *d, uint32_t max)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
}

void
mom_frame_decoder_free(mom_frame_decoder_t *d)
{
    free(d->buf);
    d->buf = NULL;
    d->len = d->pos = d->cap = 0;
}

int
mom_frame_decoder_feed(mom_frame_decoder_t *d, const void *data, size_t n)
{
    if (d->failed) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    if (d->pos > 0) {
        memmove(d->buf, d->buf + d->pos, d->len - d->pos);
        d->len -= d->pos;
        d->pos = 0;
    }
    if (d->cap - d->len < n) {
        size_t cap = d->cap ? d->cap : 4096;
        uint8_t *buf;

        while (cap - d->len < n) {
            cap *= 2;
        }
        buf = realloc(d->buf, cap);
        if (buf == NULL) {
            return -1;
        }
        d->buf = buf;
        d->cap = cap;
    }
    memcpy(d->buf + d->len, data, n);
    d->len += n;
    return 0;
}

int
mom_frame_decoder_next(mom_frame_decoder_t *d, const uint8_t **payload,
                       size_t *len)
{
    const uint8_t *p;
    uint32_t n;

    if (d->failed) {
        return -1;
    }
    if (d->len - d->pos < MOM_FRAME_HEADER) {
        return 0;
    }
    p = d->buf + d->pos;
    n = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
        (uint32_t)p[3];
    if (n == 0 || n > d->max) {
        d->failed = 1;
        return -1;
    }
    if (d->len - d->pos - MOM_FRAME_HEADER < n) {
        return 0;
    }
    *payload = p + MOM_FRAME_HEADER;
    *len = n;
    d->pos += MOM_FRAME_HEADER + n;
    return 1;
}

size_t
mom_frame_decoder_buffered(const mom_frame_decoder_t *d)
{
    return d->len - d->pos;
}

mom_frame_t *
mom_frame_encode(const ProtobufCMessage *msg, uint32_t max)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    mom_frame_t *f;

    if (n == 0 || n > max) {
        return NULL;
    }
    f = malloc(sizeof(*f) + MOM_FRAME_HEADER + n);
    if (f == NULL) {
        return NULL;
    }
    f->refs = 1;
    f->len = MOM_FRAME_HEADER + n;
    mom_frame_pack(msg, n, f->data);
    return f;
}

void
mom_frame_pack(const ProtobufCMessage *msg, size_t n, uint8_t *out)
{
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    protobuf_c_message_pack(msg, out + MOM_FRAME_HEADER);
}

mom_frame_t *
mom_frame_ref(mom_frame_t *f)
{
    f->refs++;
    return f;
}

void
mom_frame_unref(mom_frame_t *f)
{
    if (f != NULL && --f->refs == 0) {
        free(f);
    }
}
