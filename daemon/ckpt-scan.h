/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* A listing of one task's checkpoint directory: what a snapshot is made of.
 *
 * The walk never follows a symbolic link and never leaves the directory: every name is looked up
 * with fstatat(AT_SYMLINK_NOFOLLOW) relative to its directory's fd, and a directory is entered with
 * openat(O_DIRECTORY|O_NOFOLLOW), then checked to be the one just looked up. Only the root itself
 * is opened by path and may be a symlink (a checkpoint_dir placed on another disk).
 *
 * Recorded: regular files, directories and symlinks (with their target, never followed).
 * Skipped silently: the commit file (TASK_COMMIT_FILE_NAME) directly in the root, anything an
 * exclude pattern matches (an excluded directory is not entered), and names that vanish while the
 * scan runs. Skipped with a warning: sockets, fifos, block and character devices.
 * Errors (the message names the path): anything unreadable, more than CKPT_SCAN_DEPTH_MAX
 * levels, a relative path longer than CKPT_SCAN_PATH_MAX bytes, more than CKPT_SCAN_ENTRIES_MAX
 * entries, a directory replaced while being entered.
 *
 * Pure and synchronous: no logging, no global state; it may run in the worker thread. */

#define CKPT_SCAN_DEPTH_MAX 64U            /* path components of an entry: "a/b/c" is 3 */
#define CKPT_SCAN_PATH_MAX 4096U           /* bytes of a relative path, without the NUL */
#define CKPT_SCAN_ENTRIES_MAX 1000000U
#define CKPT_SCAN_WARNINGS_MAX 64U         /* messages kept; n_skipped counts them all */

typedef enum CkptEntryType {
        CKPT_ENTRY_FILE,
        CKPT_ENTRY_DIR,
        CKPT_ENTRY_SYMLINK,
        _CKPT_ENTRY_TYPE_MAX,
        _CKPT_ENTRY_TYPE_INVALID = -EINVAL,
} CkptEntryType;

/* "file", "dir", "symlink". */
const char *ckpt_entry_type_to_string(CkptEntryType t);
CkptEntryType ckpt_entry_type_from_string(const char *s);

typedef struct CkptEntry {
        char *path;             /* relative to the root, '/'-separated, no "." or ".." components */
        CkptEntryType type;
        uint64_t size;          /* file: bytes; symlink: length of the target; dir: 0 */
        mode_t mode;            /* permission bits only (& 07777) */
        uint64_t mtime_ns;      /* ns since the epoch (0 for times before it) */
        uint64_t ctime_ns;
        uint64_t ino;
        uint64_t dev;
        char *target;           /* symlink: its target, verbatim; otherwise NULL */
} CkptEntry;

/* Exclude patterns (checkpoint.exclude), gitignore-like, matched against the relative path:
 *  - each pattern is split at '/' and matched component by component with fnmatch(3) (flags 0:
 *    '*', '?' and "[...]" never match '/', a leading '.' needs no explicit match, '\' escapes),
 *    which is fnmatch(FNM_PATHNAME) on the whole path;
 *  - a pattern without a '/' (apart from a trailing one) matches the base name at any depth:
 *    "*.tmp" excludes "a.tmp" and "x/y/a.tmp";
 *  - a pattern with a '/' elsewhere is anchored at the root: "logs/a?.txt" matches "logs/ab.txt" but
 *    not "x/logs/ab.txt"; a leading '/' only anchors ("/cache" is the top-level cache only);
 *  - a trailing '/' matches directories only: "tmp/" excludes every directory named tmp, not a
 *    file of that name;
 *  - a component of exactly two stars (written ** below) matches whole components, as in
 *    gitignore: leading (** then /x: x at any depth), inner (a/ then ** then /b: a/b, a/x/b,
 *    a/x/y/b), trailing (a/ then **: everything inside a, not a itself);
 *  - an excluded directory excludes everything under it.
 * Rejected (-EINVAL, with a message): an empty pattern, a leading '!' (negation is not supported),
 * "." or ".." components, empty components ("a//b"), more than CKPT_SCAN_PATH_MAX bytes. */
typedef struct CkptExclude CkptExclude;

/* patterns may be NULL or empty. ret_error (optional): on -EINVAL, why, naming the pattern. */
int ckpt_exclude_new(char * const *patterns, CkptExclude **ret, char **ret_error);
CkptExclude *ckpt_exclude_free(CkptExclude *x);
DEFINE_CLEANUP_FUNC(CkptExclude *, ckpt_exclude_free);

/* Whether a relative path is excluded: it, or one of its parent directories, matches. is_dir says
 * what path itself is. x may be NULL (nothing excluded). False when out of memory. */
bool ckpt_exclude_match(const CkptExclude *x, const char *path, bool is_dir);

typedef struct CkptScan {
        CkptEntry *entries;     /* sorted by path, strcmp() order: a directory precedes its contents */
        size_t n_entries;
        char **warnings;        /* "ROOT/PATH: skipped, a fifo" (at most CKPT_SCAN_WARNINGS_MAX) */
        size_t n_skipped;       /* special files skipped, also those beyond the warnings kept */
        uint64_t total_bytes;   /* sum of the files' sizes */
        uint64_t started_ns;    /* CLOCK_REALTIME_COARSE when the scan began: the stat cache's stamp */
        uint64_t root_mtime_ns; /* of the root directory itself */
        uint64_t root_ctime_ns;
} CkptScan;

typedef struct CkptScanOptions {
        const CkptExclude *exclude;     /* may be NULL */
        unsigned max_depth;             /* 0: CKPT_SCAN_DEPTH_MAX (also the upper bound) */
        size_t max_entries;             /* 0: CKPT_SCAN_ENTRIES_MAX (also the upper bound) */
} CkptScanOptions;

/* Scans the directory root. opts may be NULL. On failure, ret_error (optional) gets a message
 * naming the path ("/ckpt/a/b: Permission denied"); ret is left untouched. */
int ckpt_scan(const char *root, const CkptScanOptions *opts, CkptScan **ret, char **ret_error);
CkptScan *ckpt_scan_free(CkptScan *s);
DEFINE_CLEANUP_FUNC(CkptScan *, ckpt_scan_free);

/* The entry at path, or NULL (binary search). */
const CkptEntry *ckpt_scan_find(const CkptScan *s, const char *path);

/* "Quiet since": the newest change in the scan, the largest mtime or ctime of the root and of
 * every entry. ctime counts because renaming a finished file into place, cp -p and touch -d keep
 * an old mtime; the root counts because removing or renaming a name changes only its directory.
 * Excluded names do not count (a log written all the time must not keep a checkpoint from
 * settling), except through their directory's mtime when they are created or removed. */
uint64_t ckpt_scan_quiet_since_ns(const CkptScan *s);
