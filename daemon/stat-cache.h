/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ckpt-scan.h"
#include "macro.h"
#include "sha256.h"

/* Remembers the SHA-256 of checkpoint files so that an unchanged file is not read again.
 *
 * An entry is keyed by the file's relative path and holds what fstatat() said when the file was
 * hashed (size, mtime, ctime, inode, device) plus a stamp: the time the scan that took those stat
 * values began (CkptScan.started_ns, CLOCK_REALTIME_COARSE). stat_cache_lookup() answers with the
 * cached digest only when all five stat values match and the entry is not racily clean:
 *
 *   git's racy-clean rule. A file changed again within the same timestamp tick as the write we
 *   hashed keeps its mtime and ctime; when it keeps its size too, nothing in stat shows it. So an
 *   entry is trusted only when its mtime and ctime are strictly older than its stamp: any later
 *   write then carries a newer time. Where git compares against the index file's mtime, the stamp
 *   here is per entry and taken before the file was read, which is stricter (the cache file is
 *   written later, maybe on another filesystem) and lets entries added in memory obey the same rule.
 *   A timestamp with zero nanoseconds suggests a filesystem that keeps whole seconds (FAT keeps two):
 *   such an entry needs a stamp STAT_CACHE_COARSE_SLACK_NS newer. A racily clean entry is simply
 *   hashed again; putting the new digest with the newer scan's stamp makes it trusted.
 *
 * The cache is persisted as JSON (below) with write_file_atomic(). Loading is all or nothing: a
 * file failing any check (JSON syntax, version, a missing or malformed field in any entry, a path
 * that is absolute or has "." or ".." components, the same path twice) is discarded, never partly
 * trusted. Unknown keys are ignored.
 * Bounded: at most STAT_CACHE_ENTRIES_MAX entries (put refuses more) and a file of at most
 * STAT_CACHE_FILE_MAX bytes; stat_cache_retain() drops what a scan no longer has.
 *
 * File format, version 1 (64-bit numbers are decimal strings: JSON numbers lose precision past 2^53):
 *   {"version":1,"entries":[{"path":"a/b.pt","size":"123","mtime_ns":"…","ctime_ns":"…",
 *     "ino":"…","dev":"…","stamp_ns":"…","sha256":"<64 lowercase hex>"},…]}
 * Entries are sorted by path. Synchronous and without logging; not thread-safe (one owner). */

#define STAT_CACHE_ENTRIES_MAX 100000U
#define STAT_CACHE_FILE_MAX (64U * 1024U * 1024U)
#define STAT_CACHE_COARSE_SLACK_NS ((uint64_t) 2000000000ULL)
#define STAT_CACHE_VERSION 1

typedef struct StatCache StatCache;

int stat_cache_new(StatCache **ret);
StatCache *stat_cache_free(StatCache *c);
DEFINE_CLEANUP_FUNC(StatCache *, stat_cache_free);

/* Replaces the contents of c with the file at path. On failure c is left empty (whatever it held
 * is dropped too) and the return value says why, for the caller's warning: -ENOENT (no cache yet),
 * -EBADMSG (not JSON, wrong version, a bad or duplicate entry), -EFBIG (file larger than
 * STAT_CACHE_FILE_MAX), -E2BIG (more than STAT_CACHE_ENTRIES_MAX entries), or a read error. */
int stat_cache_load(StatCache *c, const char *path);
/* Writes c to path atomically (mode 0600). */
int stat_cache_save(const StatCache *c, const char *path);

/* 1 and the digest in ret_hex (optional) when e is a file whose cached entry matches it and is not
 * racily clean; 0 otherwise. */
int stat_cache_lookup(const StatCache *c, const CkptEntry *e, char ret_hex[SHA256_HEX_SIZE]);
/* Records the digest of file e, stat'ed by a scan that began at stamp_ns. -EINVAL for a
 * non-file or a bad digest, -E2BIG when the cache is full (the file just goes uncached). */
int stat_cache_put(StatCache *c, const CkptEntry *e, const char *hex, uint64_t stamp_ns);
/* 1 if an entry was removed, 0 if there was none. */
int stat_cache_remove(StatCache *c, const char *path);
/* Keeps only the paths that are files in s; returns how many entries were dropped. */
int stat_cache_retain(StatCache *c, const CkptScan *s);

size_t stat_cache_size(const StatCache *c);
