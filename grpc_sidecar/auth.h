/*
 * Password hashing: PBKDF2-HMAC-SHA256, 16-byte random salt, 32-byte key,
 * stored as "pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>". The
 * synchronous functions are slow by design; on the loop use the _async
 * ones, which run on the libuv thread pool.
 */
#ifndef MOM_AUTH_H
#define MOM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define MOM_AUTH_HASH_MAX 128
#define MOM_AUTH_MAX_ITERATIONS 100000000U

/* Writes the encoded hash (NUL-terminated) into out; returns 0 or -1. */
int mom_auth_hash(const char *password, size_t len, uint32_t iterations,
                  char out[MOM_AUTH_HASH_MAX]);

/* True when password matches the encoded hash; false on any mismatch or a
 * malformed hash. Constant time in the password's correctness. */
bool mom_auth_verify(const char *password, size_t len, const char *encoded);

/* hash is NULL on failure; it is valid during the callback only. */
typedef void (*mom_auth_hash_cb)(void *data, const char *hash);
typedef void (*mom_auth_verify_cb)(void *data, bool ok);

/*
 * Copies the password (the caller may wipe its own copy at once) and hashes
 * it on the thread pool; the copy is wiped after use. Returns -1 if the work
 * could not be queued (the callback is then not called).
 */
int mom_auth_hash_async(uv_loop_t *loop, const char *password, size_t len,
                        uint32_t iterations, mom_auth_hash_cb cb, void *data);

/*
 * Verifies on the thread pool. encoded may be NULL (unknown user): a hash
 * of the same cost is still computed, so that timing does not reveal which
 * user names exist, and the result is false.
 */
int mom_auth_verify_async(uv_loop_t *loop, const char *password, size_t len,
                          const char *encoded, uint32_t iterations,
                          mom_auth_verify_cb cb, void *data);

#endif
