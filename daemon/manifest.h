/* SPDX-License-Identifier: MIT */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

/* The snapshot format, version 1 (docs/snapshot-format.md is the specification; keep the two in
 * step): snapshot ids, the object-store layout, the manifest (builder, deterministic serializer,
 * strict parser) and the job's completion marker.
 *
 * Pure code: no I/O, no logging, no global state (it may run in the worker thread).
 *
 * Errors: the builder returns -EINVAL for input that breaks a rule; the parsers return -EBADMSG
 * for a document that is not a valid manifest (or marker), and -EPROTONOSUPPORT for one written
 * by a newer trainsupd (a newer "version"); -ENOMEM. On -EINVAL, -EBADMSG and -EPROTONOSUPPORT,
 * *ret_error (when ret_error is not NULL) holds one line that names the field and the problem:
 *   files[3].path: ".." component
 *   version: written by a newer trainsupd (version 2)
 *   2:17: syntax error: expected ',' or '}'
 * files[N] is the entry's position in the document, or for the builder the order of addition
 * (the first entry added is files[0]). Outputs are left untouched on failure. */

/* ---- limits */

#define MANIFEST_VERSION 1U
#define MANIFEST_FORMAT "trainsupd-snapshot"
#define MANIFEST_SIZE_MAX (64U * 1024U * 1024U)         /* bytes of a manifest document */
#define MANIFEST_ENTRIES_MAX 1000000U
#define MANIFEST_PATH_MAX 4096U                         /* bytes of an entry's path */
#define MANIFEST_NAME_MAX 255U                          /* bytes of one path component */
#define MANIFEST_TARGET_MAX 4095U                       /* bytes of a symlink target (PATH_MAX - 1) */
#define MANIFEST_FILE_SIZE_MAX (UINT64_C(1) << 50)      /* one file, and the sum of all of them */
#define MANIFEST_PARTS_MAX 10000U
#define MANIFEST_MODE_MAX 0777U                         /* permission bits only */
#define MANIFEST_MTIME_NS_MAX ((uint64_t) INT64_MAX)
#define MANIFEST_NESTING_MAX 32U                        /* JSON nesting, "ext" objects included */
#define MANIFEST_SHA256_HEX_LEN 64U
#define MANIFEST_OBJECT_KEY_MAX (5U + MANIFEST_SHA256_HEX_LEN + 1U) /* "data/<sha256>" and a NUL */

#define COMPLETION_FORMAT "trainsupd-completed"
#define COMPLETION_VERSION 1U
#define COMPLETION_SIZE_MAX (1024U * 1024U)
#define COMPLETION_FILE_NAME "COMPLETED.json"

/* Bytes of each writer field (instance_id, boot_id, hostname): printable ASCII, no space. */
#define SNAPSHOT_WRITER_FIELD_MAX 255U

/* ---- snapshot ids: "<seq>-<time>-<writer>", e.g. "000000000012-20261123T160000123Z-3fa2c0de" */

#define SNAPSHOT_SEQ_MAX UINT64_C(999999999999)         /* 12 decimal digits */
#define SNAPSHOT_WRITER_LEN 8U                          /* lowercase hex digits */
#define SNAPSHOT_ID_LEN (12U + 1U + 19U + 1U + SNAPSHOT_WRITER_LEN)
#define SNAPSHOT_ID_MAX (SNAPSHOT_ID_LEN + 1U)          /* with the NUL */

typedef struct SnapshotId {
        uint64_t seq;                   /* 1 ... SNAPSHOT_SEQ_MAX */
        usec_t time;                    /* CLOCK_REALTIME, whole milliseconds */
        char writer[SNAPSHOT_WRITER_LEN + 1];
} SnapshotId;

/* Formats an id; time is cut to milliseconds. -EINVAL when seq is 0 or above SNAPSHOT_SEQ_MAX,
 * writer is not 8 lowercase hex digits, or time is past the year 9999. */
int snapshot_id_format(uint64_t seq, usec_t time, const char *writer, char ret[static SNAPSHOT_ID_MAX]);
/* Strict: exactly the syntax above, seq ≥ 1, a real UTC date and time. -EINVAL otherwise. */
int snapshot_id_parse(const char *s, SnapshotId *ret);
bool snapshot_id_is_valid(const char *s);
/* Commit order: < 0, 0, > 0 like strcmp(). Valid ids compare by seq, then time, then writer,
 * which is exactly their byte order; an invalid id (or NULL) sorts before every valid one, so it
 * never wins "the greatest id". */
int snapshot_id_compare(const char *a, const char *b);

/* The writer part of an id: the first 8 hex digits of SHA-256("<instance_id>\n<boot_id>").
 * -EINVAL when either is not a valid writer field. */
int snapshot_writer_id(const char *instance_id, const char *boot_id, char ret[static SNAPSHOT_WRITER_LEN + 1]);
/* 1 to SNAPSHOT_WRITER_FIELD_MAX bytes in '!' ... '~'. */
bool snapshot_writer_field_is_valid(const char *s);

/* ---- the layout, keys relative to the store's root (storage.url) */

/* "<job>/<task>/manifests/<id>.json" */
int snapshot_manifest_key(const char *job, const char *task, const char *id, char **ret);
/* "<job>/<task>/data/<sha256>" */
int snapshot_object_key(const char *job, const char *task, const char *sha256, char **ret);
/* "<job>/COMPLETED.json" */
int snapshot_completion_key(const char *job, char **ret);
/* The id named by a key of a manifest listing, "<job>/<task>/manifests/<id>.json" exactly;
 * -EINVAL for anything else (stray objects in the prefix are not snapshots). */
int snapshot_manifest_key_to_id(const char *key, const char *job, const char *task,
                                char ret[static SNAPSHOT_ID_MAX]);

/* ---- the manifest */

typedef enum ManifestEntryType {
        MANIFEST_ENTRY_FILE,
        MANIFEST_ENTRY_DIR,
        MANIFEST_ENTRY_SYMLINK,
        _MANIFEST_ENTRY_TYPE_MAX,
        _MANIFEST_ENTRY_TYPE_INVALID = -EINVAL,
} ManifestEntryType;

const char *manifest_entry_type_to_string(ManifestEntryType t);
ManifestEntryType manifest_entry_type_from_string(const char *s);

typedef struct ManifestPart {
        uint64_t size;
        char sha256[MANIFEST_SHA256_HEX_LEN + 1];
} ManifestPart;

typedef struct ManifestEntry {
        char *path;             /* relative, '/'-separated, no empty, "." or ".." components */
        ManifestEntryType type;
        size_t index;           /* position in the document, or order of addition (messages) */
        unsigned mode;          /* file, dir: 0 ... 0777 */
        uint64_t size;          /* file */
        uint64_t mtime_ns;      /* file: ns since the epoch */
        char sha256[MANIFEST_SHA256_HEX_LEN + 1]; /* file; its object is "data/<sha256>" */
        uint64_t part_size;     /* file: 0 when it has no part checksums */
        ManifestPart *parts;
        size_t n_parts;
        char *target;           /* symlink: relative, stays inside the snapshot */
} ManifestEntry;

typedef struct SnapshotWriter {
        char *instance_id;
        char *boot_id;
        char *hostname;
} SnapshotWriter;

typedef struct Manifest {
        char id[SNAPSHOT_ID_MAX];
        uint64_t seq;           /* from the id */
        usec_t created_at;      /* the id's time */
        char *job;
        char *task;
        SnapshotWriter writer;
        char *parent;           /* id of the snapshot this one was made from, or NULL */
        uint64_t bytes;         /* sum of the files' sizes */
        ManifestEntry *entries; /* sorted by path (strcmp order) once validated */
        size_t n_entries;
        size_t n_allocated;
        bool sorted;
        bool validated;         /* the whole-manifest rules hold for the entries as they are */
} Manifest;

typedef struct ManifestParams {
        const char *id;         /* its seq and time become the manifest's seq and created_at */
        const char *job;        /* config_job_id_is_valid() */
        const char *task;       /* config_task_name_is_valid() */
        const char *parent;     /* NULL, or an id older than id */
        const char *instance_id;
        const char *boot_id;
        const char *hostname;
} ManifestParams;

/* A manifest without entries. The id's writer must be snapshot_writer_id(instance_id, boot_id). */
int manifest_new(const ManifestParams *p, Manifest **ret, char **ret_error);
Manifest *manifest_free(Manifest *m);
DEFINE_CLEANUP_FUNC(Manifest *, manifest_free);

typedef struct ManifestFile {
        uint64_t size;
        unsigned mode;          /* permission bits only: mask st_mode with 0777 */
        uint64_t mtime_ns;
        const char *sha256;     /* 64 lowercase hex digits */
        /* Optional per-part checksums of a multipart upload: n_parts ≥ 1 parts, each part_size
         * bytes except the last (1 ... part_size bytes), summing to size. */
        uint64_t part_size;
        const ManifestPart *parts;
        size_t n_parts;
} ManifestFile;

/* The builder. Each entry is checked on its own here (the same rules and messages as the parser);
 * what involves several entries (duplicates, parents, targets through other symlinks, one size
 * per sha256) is checked by manifest_validate(). -EINVAL with *ret_error on a broken rule. */
int manifest_add_file(Manifest *m, const char *path, const ManifestFile *f, char **ret_error);
int manifest_add_dir(Manifest *m, const char *path, unsigned mode, char **ret_error);
int manifest_add_symlink(Manifest *m, const char *path, const char *target, char **ret_error);

/* Sorts the entries by path and checks the rules that involve several entries: no duplicate
 * paths, every parent directory present as a "dir" entry, no symlink target that passes through
 * or ends at a symlink of the manifest, one size per sha256. -EINVAL with *ret_error. */
int manifest_validate(Manifest *m, char **ret_error);

/* The manifest as JSON (validated first): deterministic, the same manifest gives the same bytes
 * (fixed key order, entries sorted by path, one entry per line, a final newline). */
int manifest_to_json(Manifest *m, char **ret, size_t *ret_len, char **ret_error);

/* Parses and validates a manifest document of len bytes (no NUL needed). Larger than
 * MANIFEST_SIZE_MAX is refused before parsing. The result is validated and sorted. */
int manifest_parse(const char *data, size_t len, Manifest **ret, char **ret_error);

/* The entry at path, or NULL. Binary search once sorted. */
const ManifestEntry *manifest_find(const Manifest *m, const char *path);

/* "data/<sha256>" of a file entry (relative to "<job>/<task>/"); returns buf. */
char *manifest_entry_object_key(const ManifestEntry *e, char buf[static MANIFEST_OBJECT_KEY_MAX]);

/* Every object key the manifest references ("data/<sha256>", relative to "<job>/<task>/"), each
 * once, sorted: what retention must keep. An empty strv (not NULL) when there are no files. */
int manifest_object_keys(const Manifest *m, char ***ret);

/* ---- the job's completion marker, "<job>/COMPLETED.json" */

typedef struct JobCompletionTask {
        char *task;
        char *last_snapshot;    /* the task's newest committed snapshot id, or NULL: none */
} JobCompletionTask;

typedef struct JobCompletion {
        char *job;
        usec_t completed_at;    /* whole milliseconds */
        SnapshotWriter writer;
        JobCompletionTask *tasks; /* sorted by name */
        size_t n_tasks;
} JobCompletion;

typedef struct JobCompletionParams {
        const char *job;
        usec_t completed_at;    /* cut to milliseconds */
        const char *instance_id;
        const char *boot_id;
        const char *hostname;
} JobCompletionParams;

int job_completion_new(const JobCompletionParams *p, JobCompletion **ret, char **ret_error);
JobCompletion *job_completion_free(JobCompletion *c);
DEFINE_CLEANUP_FUNC(JobCompletion *, job_completion_free);

/* At most CONFIG_TASKS_MAX tasks, each once; last_snapshot NULL or a valid id. */
int job_completion_add_task(JobCompletion *c, const char *task, const char *last_snapshot, char **ret_error);
const JobCompletionTask *job_completion_find_task(const JobCompletion *c, const char *task);

/* Deterministic JSON (at least one task). */
int job_completion_to_json(const JobCompletion *c, char **ret, size_t *ret_len, char **ret_error);
/* Strict, like manifest_parse(); larger than COMPLETION_SIZE_MAX is refused before parsing. */
int job_completion_parse(const char *data, size_t len, JobCompletion **ret, char **ret_error);

/* ---- single values (exposed for the scanner and the tests) */

/* NULL when path is a valid entry path, else the problem as the parser words it
 * ("\"..\" component", "absolute path", ...). A scanner may skip names that fail this. */
const char *manifest_path_check(const char *path);
/* Whether s is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF). */
bool manifest_utf8_is_valid(const char *s, size_t n);
