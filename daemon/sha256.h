/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* SHA-256 through libcrypto's EVP interface.
 *
 * Everything here is synchronous, keeps no global state and never logs, so it may run in the
 * hashing worker thread. Failures are negative errno values: -ENOMEM, -EIO for a libcrypto
 * failure, the read error of pread(), or -ENODATA when a file ends before the requested range
 * does (it was truncated while being hashed). */

#define SHA256_DIGEST_SIZE 32U
#define SHA256_HEX_SIZE (SHA256_DIGEST_SIZE * 2 + 1) /* 64 lowercase hex digits and a NUL */
#define SHA256_READ_BLOCK (1024U * 1024U)              /* pread() size for files */
#define SHA256_TO_EOF UINT64_MAX                       /* length: up to the end of the file */

int sha256_buffer(const void *data, size_t len, uint8_t ret[static SHA256_DIGEST_SIZE]);

/* Hashes length bytes of fd from offset on, with pread() (the file position is neither used nor
 * moved, so several threads may hash ranges of one fd). length SHA256_TO_EOF hashes up to the end
 * of the file; ret_length (optional) is then the number of bytes hashed. */
int sha256_fd_range(int fd, uint64_t offset, uint64_t length, uint8_t ret[static SHA256_DIGEST_SIZE],
                    uint64_t *ret_length);

/* ret is NUL-terminated lowercase hex; returns ret. */
char *sha256_to_hex(const uint8_t digest[static SHA256_DIGEST_SIZE], char ret[static SHA256_HEX_SIZE]);
/* Exactly 64 lowercase hex digits (the form sha256_to_hex() writes and manifests store). */
bool sha256_hex_valid(const char *s);
/* -EINVAL unless sha256_hex_valid(s). */
int sha256_from_hex(const char *s, uint8_t ret[static SHA256_DIGEST_SIZE]);

/* Streaming: new, update as often as needed, final. final() leaves the context ready for a new
 * digest, so one context can serve many objects. */
typedef struct Sha256Ctx Sha256Ctx;

int sha256_ctx_new(Sha256Ctx **ret);
Sha256Ctx *sha256_ctx_free(Sha256Ctx *c);
DEFINE_CLEANUP_FUNC(Sha256Ctx *, sha256_ctx_free);

int sha256_ctx_update(Sha256Ctx *c, const void *data, size_t len);
int sha256_ctx_final(Sha256Ctx *c, uint8_t ret[static SHA256_DIGEST_SIZE]);
/* Bytes fed since the last final() (or new()). */
uint64_t sha256_ctx_bytes(const Sha256Ctx *c);
