/*
 * A growable byte buffer and a small writer of compact JSON on top of it.
 * Strings are escaped per RFC 8259; message contents (already JSON text)
 * are embedded verbatim with mom_json_raw().
 */
#ifndef MOM_JSON_H
#define MOM_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed; /* an allocation failed: the content is incomplete */
} mom_buf_t;

void mom_buf_init(mom_buf_t *b);
void mom_buf_free(mom_buf_t *b);
void mom_buf_reset(mom_buf_t *b);
int mom_buf_reserve(mom_buf_t *b, size_t extra);
void mom_buf_append(mom_buf_t *b, const void *data, size_t len);
void mom_buf_puts(mom_buf_t *b, const char *s);

/* A JSON string literal (with quotes) of len bytes of UTF-8 text. */
void mom_json_str(mom_buf_t *b, const char *s, size_t len);
void mom_json_cstr(mom_buf_t *b, const char *s);
void mom_json_u64(mom_buf_t *b, uint64_t v);
/* Already valid JSON text, copied as is. */
void mom_json_raw(mom_buf_t *b, const void *json, size_t len);
/* "2026-11-26T14:38:35.123Z" (with quotes) for milliseconds since epoch. */
void mom_json_timestamp(mom_buf_t *b, int64_t ms);

/*
 * Whether [data, data + len) is exactly one JSON string literal with no
 * escape: quotes around strict UTF-8 (no overlong form, surrogate or code
 * point above U+10FFFF) without control characters. Such text needs no
 * full parser to be known valid.
 */
bool mom_json_is_plain_string(const void *data, size_t len);

/* {"detail":"<text>"} */
void mom_json_detail(mom_buf_t *b, const char *text);

/*
 * One message object as used by history, RECEIVE and SSE:
 * {"<id_key>":N,"sender":"u","content":<json>,"timestamp":"..."}
 */
void mom_json_message(mom_buf_t *b, const char *id_key, uint64_t id,
                      const char *sender, size_t sender_len,
                      const void *content, size_t content_len, int64_t ts_ms);

#endif
