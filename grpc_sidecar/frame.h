/*
 * The local frame protocol (proto/mom.proto): a 4-byte big-endian length n
 * (1..max) followed by n bytes of protobuf. An incremental decoder that is
 * fed bytes as they arrive, and an encoder producing refcounted frames that
 * can be written to many connections at once (SSE fan-out).
 */
#ifndef MOM_FRAME_H
#define MOM_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define MOM_FRAME_HEADER 4

typedef struct {
    uint8_t *buf;
    size_t len; /* bytes held */
    size_t pos; /* start of the first unconsumed byte */
    size_t cap;
    uint32_t max;
    int failed;
} mom_frame_decoder_t;

void mom_frame_decoder_init(mom_frame_decoder_t *d, uint32_t max);
void mom_frame_decoder_free(mom_frame_decoder_t *d);

/* Appends bytes; returns -1 when out of memory. */
int mom_frame_decoder_feed(mom_frame_decoder_t *d, const void *data, size_t n);

/*
 * Returns 1 with the next complete frame's payload (valid until the next
 * call of feed), 0 when more bytes are needed, -1 when the stream is
 * invalid (length 0 or above max); the error is sticky.
 */
int mom_frame_decoder_next(mom_frame_decoder_t *d, const uint8_t **payload,
                           size_t *len);

/* Bytes received and not yet returned as frames. */
size_t mom_frame_decoder_buffered(const mom_frame_decoder_t *d);

/* An encoded frame (header + payload), shared by reference counting. */
typedef struct {
    unsigned refs;
    size_t len;
    uint8_t data[];
} mom_frame_t;

/*
 * Packs msg as one frame with one reference. Returns NULL when out of
 * memory or when the packed message is empty or larger than max.
 */
mom_frame_t *mom_frame_encode(const ProtobufCMessage *msg, uint32_t max);
/* Writes msg's frame (its packed size n known) at out: 4 + n bytes. */
void mom_frame_pack(const ProtobufCMessage *msg, size_t n, uint8_t *out);
mom_frame_t *mom_frame_ref(mom_frame_t *f);
void mom_frame_unref(mom_frame_t *f);

#endif
