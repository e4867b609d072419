/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <fcntl.h>
#include <openssl/evp.h>

#include "sha256.h"

struct Sha256Ctx {
        EVP_MD_CTX *md;
        uint64_t bytes;
};

int sha256_buffer(const void *data, size_t len, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        unsigned n = 0;

        assert(data || len == 0);

        if (EVP_Digest(len > 0 ? data : "", len, ret, &n, EVP_sha256(), NULL) != 1 ||
            n != SHA256_DIGEST_SIZE)
                return -EIO;
        return 0;
}

int sha256_ctx_new(Sha256Ctx **ret) {
        _cleanup_(sha256_ctx_freep) Sha256Ctx *c = NULL;

        assert(ret);

        c = calloc(1, sizeof(Sha256Ctx));
        if (!c)
                return -ENOMEM;
        c->md = EVP_MD_CTX_new();
        if (!c->md)
                return -ENOMEM;
        if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
                return -EIO;
        *ret = TAKE_PTR(c);
        return 0;
}

Sha256Ctx *sha256_ctx_free(Sha256Ctx *c) {
        if (!c)
                return NULL;
        EVP_MD_CTX_free(c->md);
        return mfree(c);
}

int sha256_ctx_update(Sha256Ctx *c, const void *data, size_t len) {
        assert(c);
        assert(data || len == 0);

        if (len == 0)
                return 0;
        if (EVP_DigestUpdate(c->md, data, len) != 1)
                return -EIO;
        c->bytes += len;
        return 0;
}

int sha256_ctx_final(Sha256Ctx *c, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        unsigned n = 0;

        assert(c);

        if (EVP_DigestFinal_ex(c->md, ret, &n) != 1 || n != SHA256_DIGEST_SIZE)
                return -EIO;
        c->bytes = 0;
        if (EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
                return -EIO;
        return 0;
}

uint64_t sha256_ctx_bytes(const Sha256Ctx *c) {
        assert(c);
        return c->bytes;
}

static ssize_t pread_full(int fd, void *buf, size_t len, uint64_t offset) {
        size_t done = 0;

        /* Short reads happen (signals, some filesystems); only 0 means the end of the file. */
        while (done < len) {
                ssize_t n = pread(fd, (char *) buf + done, len - done, (off_t) (offset + done));

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        return (ssize_t) done;
}

static int hash_fd(Sha256Ctx *c, int fd, void *buf, size_t buf_size, uint64_t offset, uint64_t length) {
        uint64_t left = length;
        int r;

        while (left > 0) {
                size_t want = (size_t) MIN(left, (uint64_t) buf_size);
                ssize_t n = pread_full(fd, buf, want, offset);

                if (n < 0)
                        return (int) n;
                r = sha256_ctx_update(c, buf, (size_t) n);
                if (r < 0)
                        return r;
                offset += (uint64_t) n;
                if (length != SHA256_TO_EOF)
                        left -= (uint64_t) n;
                if ((size_t) n < want)
                        return length == SHA256_TO_EOF ? 0 : -ENODATA;
        }
        return 0;
}

int sha256_fd_range(int fd, uint64_t offset, uint64_t length, uint8_t ret[static SHA256_DIGEST_SIZE],
                    uint64_t *ret_length) {
        _cleanup_(sha256_ctx_freep) Sha256Ctx *c = NULL;
        _cleanup_free_ void *buf = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];
        size_t buf_size;
        uint64_t n;
        int r;

        assert(fd >= 0);

        if (offset > INT64_MAX || (length != SHA256_TO_EOF && length > INT64_MAX - offset))
                return -EOVERFLOW;

        r = sha256_ctx_new(&c);
        if (r < 0)
                return r;
        /* A small range needs no 1 MiB buffer: many small files are common in checkpoints. */
        buf_size = (size_t) MIN(MAX(length, (uint64_t) 1), (uint64_t) SHA256_READ_BLOCK);
        buf = malloc(buf_size);
        if (!buf)
                return -ENOMEM;
        (void) posix_fadvise(fd, (off_t) offset, length == SHA256_TO_EOF ? 0 : (off_t) length,
                             POSIX_FADV_SEQUENTIAL);

        r = hash_fd(c, fd, buf, buf_size, offset, length);
        if (r < 0)
                return r;
        n = sha256_ctx_bytes(c);
        r = sha256_ctx_final(c, digest);
        if (r < 0)
                return r;
        memcpy(ret, digest, sizeof(digest));
        if (ret_length)
                *ret_length = n;
        return 0;
}

char *sha256_to_hex(const uint8_t digest[static SHA256_DIGEST_SIZE], char ret[static SHA256_HEX_SIZE]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
                ret[i * 2] = hex[digest[i] >> 4];
                ret[i * 2 + 1] = hex[digest[i] & 0xf];
        }
        ret[SHA256_DIGEST_SIZE * 2] = 0;
        return ret;
}

static int unhex_char(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -EINVAL;
}

bool sha256_hex_valid(const char *s) {
        size_t i;

        if (!s)
                return false;
        for (i = 0; i < SHA256_DIGEST_SIZE * 2; i++)
                if (unhex_char(s[i]) < 0)
                        return false;
        return s[i] == 0;
}

int sha256_from_hex(const char *s, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        if (!sha256_hex_valid(s))
                return -EINVAL;
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++)
                ret[i] = (uint8_t) (unhex_char(s[i * 2]) << 4 | unhex_char(s[i * 2 + 1]));
        return 0;
}
