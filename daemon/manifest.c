/* SPDX-License-Identifier: MIT */
/* The snapshot format, version 1 (docs/snapshot-format.md): ids, layout keys, the manifest's builder,
 * serializer and strict parser, and the job's completion marker.
 *
 * The parser reads with json-strict.c instead of a cJSON tree (exact integers, repeated keys seen,
 * bounded nesting, nothing built but the Manifest: a 64 MiB document never becomes a tree several
 * times its size). It reads a document twice: once to check its syntax and find "format" and
 * "version" (so that a newer version is reported as such, whatever else it holds), then against the
 * schema. Nothing here logs or does I/O. */

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "config.h"
#include "json-strict.h"
#include "manifest.h"
#include "sha256.h"
#include "strv.h"

#define OBJECT_PREFIX "data/"

_Static_assert(MANIFEST_NESTING_MAX == JSON_NESTING_MAX, "manifest nesting is the reader's");

/* ---- problems: the first one is kept (first_problem(), json-strict.c), later ones are dropped */

/* Hands the message out of a public function that failed. */
static int finish(int r, char **error, char **ret_error) {
        if (r < 0 && ret_error && *error)
                *ret_error = TAKE_PTR(*error);
        return r;
}

/* The builder's "bad input" is the parser's "bad document". */
static int bad_message(int r) {
        return r == -EINVAL ? -EBADMSG : r;
}

static bool is_digit(int c) {
        return c >= '0' && c <= '9';
}

static bool is_lower_hex(char c) {
        return is_digit(c) || (c >= 'a' && c <= 'f');
}

static bool is_control(unsigned char c) {
        return c < 0x20 || c == 0x7f;
}

bool manifest_utf8_is_valid(const char *s, size_t n) {
        return json_utf8_is_valid(s, n);
}

/* ---- UTC times: ids ("20261123T160000123Z") and RFC 3339 ("2026-11-23T16:00:00.123Z") */

typedef struct UtcTime {
        unsigned year, month, day, hour, minute, second, msec;
} UtcTime;

static bool parse_fixed(const char *s, size_t n, unsigned *ret) {
        unsigned v = 0;

        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return true;
}

static unsigned days_in_month(unsigned year, unsigned month) {
        static const unsigned days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

        return month == 2 && leap ? 29 : days[month - 1];
}

/* Years 1970 ... 9999, no leap seconds. */
static int utc_time_to_usec(const UtcTime *t, usec_t *ret) {
        struct tm tm;
        time_t s;

        if (t->year < 1970 || t->year > 9999 || t->month < 1 || t->month > 12 || t->day < 1 ||
            t->day > days_in_month(t->year, t->month) || t->hour > 23 || t->minute > 59 || t->second > 59 ||
            t->msec > 999)
                return -EINVAL;
        tm = (struct tm) { .tm_year = (int) t->year - 1900, .tm_mon = (int) t->month - 1,
                           .tm_mday = (int) t->day, .tm_hour = (int) t->hour, .tm_min = (int) t->minute,
                           .tm_sec = (int) t->second };
        s = timegm(&tm);
        if (s < 0)
                return -EINVAL;
        *ret = (usec_t) s * USEC_PER_SEC + (usec_t) t->msec * USEC_PER_MSEC;
        return 0;
}

static int utc_time_from_usec(usec_t u, UtcTime *ret) {
        time_t s = (time_t) (u / USEC_PER_SEC);
        struct tm tm;

        if (u == USEC_INFINITY || !gmtime_r(&s, &tm) || tm.tm_year + 1900 > 9999)
                return -EINVAL;
        *ret = (UtcTime) { .year = (unsigned) tm.tm_year + 1900, .month = (unsigned) tm.tm_mon + 1,
                           .day = (unsigned) tm.tm_mday, .hour = (unsigned) tm.tm_hour,
                           .minute = (unsigned) tm.tm_min, .second = (unsigned) tm.tm_sec,
                           .msec = (unsigned) ((u % USEC_PER_SEC) / USEC_PER_MSEC) };
        return 0;
}

static usec_t usec_to_msec_precision(usec_t u) {
        return u - u % USEC_PER_MSEC;
}

/* Exactly "YYYY-MM-DDTHH:MM:SS.mmmZ". */
static int parse_rfc3339_msec(const char *s, usec_t *ret) {
        UtcTime t;

        if (!s || strlen(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
            s[16] != ':' || s[19] != '.' || s[23] != 'Z')
                return -EINVAL;
        if (!parse_fixed(s, 4, &t.year) || !parse_fixed(s + 5, 2, &t.month) || !parse_fixed(s + 8, 2, &t.day) ||
            !parse_fixed(s + 11, 2, &t.hour) || !parse_fixed(s + 14, 2, &t.minute) ||
            !parse_fixed(s + 17, 2, &t.second) || !parse_fixed(s + 20, 3, &t.msec))
                return -EINVAL;
        return utc_time_to_usec(&t, ret);
}

/* ---- snapshot ids */

static bool writer_hex_is_valid(const char *s) {
        if (!s)
                return false;
        for (size_t i = 0; i < SNAPSHOT_WRITER_LEN; i++)
                if (!is_lower_hex(s[i]))
                        return false;
        return s[SNAPSHOT_WRITER_LEN] == '\0';
}

int snapshot_id_format(uint64_t seq, usec_t time, const char *writer, char ret[static SNAPSHOT_ID_MAX]) {
        UtcTime t;
        int n;

        if (seq < 1 || seq > SNAPSHOT_SEQ_MAX || !writer_hex_is_valid(writer) ||
            utc_time_from_usec(time, &t) < 0)
                return -EINVAL;
        n = snprintf(ret, SNAPSHOT_ID_MAX, "%012" PRIu64 "-%04u%02u%02uT%02u%02u%02u%03uZ-%s", seq, t.year,
                     t.month, t.day, t.hour, t.minute, t.second, t.msec, writer);
        assert(n == (int) SNAPSHOT_ID_LEN);
        return 0;
}

int snapshot_id_parse(const char *s, SnapshotId *ret) {
        SnapshotId id = {};
        const char *t;
        UtcTime ut;

        /* 000000000012-20261123T160000123Z-3fa2c0de */
        if (!s || strlen(s) != SNAPSHOT_ID_LEN || s[12] != '-' || s[21] != 'T' || s[31] != 'Z' || s[32] != '-')
                return -EINVAL;
        for (size_t i = 0; i < 12; i++) {
                if (!is_digit(s[i]))
                        return -EINVAL;
                id.seq = id.seq * 10 + (uint64_t) (s[i] - '0');
        }
        t = s + 13;
        if (id.seq < 1 || !parse_fixed(t, 4, &ut.year) || !parse_fixed(t + 4, 2, &ut.month) ||
            !parse_fixed(t + 6, 2, &ut.day) || !parse_fixed(t + 9, 2, &ut.hour) ||
            !parse_fixed(t + 11, 2, &ut.minute) || !parse_fixed(t + 13, 2, &ut.second) ||
            !parse_fixed(t + 15, 3, &ut.msec))
                return -EINVAL;
        if (utc_time_to_usec(&ut, &id.time) < 0 || !writer_hex_is_valid(s + 33))
                return -EINVAL;
        memcpy(id.writer, s + 33, SNAPSHOT_WRITER_LEN + 1);
        if (ret)
                *ret = id;
        return 0;
}

bool snapshot_id_is_valid(const char *s) {
        return snapshot_id_parse(s, NULL) >= 0;
}

int snapshot_id_compare(const char *a, const char *b) {
        bool va = snapshot_id_is_valid(a), vb = snapshot_id_is_valid(b);
        int c;

        if (va != vb)
                return va ? 1 : -1;
        if (!a || !b)
                return (a != NULL) - (b != NULL);
        c = strcmp(a, b);
        return (c > 0) - (c < 0);
}

bool snapshot_writer_field_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        for (n = 0; s[n]; n++)
                if (s[n] < '!' || s[n] > '~' || n >= SNAPSHOT_WRITER_FIELD_MAX)
                        return false;
        return n > 0;
}

int snapshot_writer_id(const char *instance_id, const char *boot_id, char ret[static SNAPSHOT_WRITER_LEN + 1]) {
        _cleanup_free_ char *s = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];
        int r;

        if (!snapshot_writer_field_is_valid(instance_id) || !snapshot_writer_field_is_valid(boot_id))
                return -EINVAL;
        if (asprintf(&s, "%s\n%s", instance_id, boot_id) < 0)
                return -ENOMEM;
        r = sha256_buffer(s, strlen(s), digest);
        if (r < 0)
                return r;
        for (size_t i = 0; i < SNAPSHOT_WRITER_LEN / 2; i++)
                (void) snprintf(ret + i * 2, 3, "%02x", digest[i]);
        return 0;
}

/* ---- layout keys */

int snapshot_manifest_key(const char *job, const char *task, const char *id, char **ret) {
        if (!config_job_id_is_valid(job) || !config_task_name_is_valid(task) || !snapshot_id_is_valid(id))
                return -EINVAL;
        return asprintf(ret, "%s/%s/manifests/%s.json", job, task, id) < 0 ? -ENOMEM : 0;
}

int snapshot_object_key(const char *job, const char *task, const char *sha256, char **ret) {
        if (!config_job_id_is_valid(job) || !config_task_name_is_valid(task) || !sha256_hex_valid(sha256))
                return -EINVAL;
        return asprintf(ret, "%s/%s/" OBJECT_PREFIX "%s", job, task, sha256) < 0 ? -ENOMEM : 0;
}

int snapshot_completion_key(const char *job, char **ret) {
        if (!config_job_id_is_valid(job))
                return -EINVAL;
        return asprintf(ret, "%s/" COMPLETION_FILE_NAME, job) < 0 ? -ENOMEM : 0;
}

int snapshot_manifest_key_to_id(const char *key, const char *job, const char *task,
                                char ret[static SNAPSHOT_ID_MAX]) {
        size_t jn, tn, prefix;
        char id[SNAPSHOT_ID_MAX];

        if (!key || !config_job_id_is_valid(job) || !config_task_name_is_valid(task))
                return -EINVAL;
        jn = strlen(job);
        tn = strlen(task);
        prefix = jn + 1 + tn + strlen("/manifests/");
        if (strlen(key) != prefix + SNAPSHOT_ID_LEN + strlen(".json") || !strneq(key, job, jn) ||
            key[jn] != '/' || !strneq(key + jn + 1, task, tn) || !strneq(key + jn + 1 + tn, "/manifests/", 11) ||
            !streq(key + prefix + SNAPSHOT_ID_LEN, ".json"))
                return -EINVAL;
        memcpy(id, key + prefix, SNAPSHOT_ID_LEN);
        id[SNAPSHOT_ID_LEN] = '\0';
        if (!snapshot_id_is_valid(id))
                return -EINVAL;
        memcpy(ret, id, SNAPSHOT_ID_MAX);
        return 0;
}

/* ---- single values */

static const char * const entry_type_table[_MANIFEST_ENTRY_TYPE_MAX] = {
        [MANIFEST_ENTRY_FILE] = "file",
        [MANIFEST_ENTRY_DIR] = "dir",
        [MANIFEST_ENTRY_SYMLINK] = "symlink",
};

const char *manifest_entry_type_to_string(ManifestEntryType t) {
        return t >= 0 && t < _MANIFEST_ENTRY_TYPE_MAX ? entry_type_table[t] : NULL;
}

ManifestEntryType manifest_entry_type_from_string(const char *s) {
        for (size_t i = 0; s && i < _MANIFEST_ENTRY_TYPE_MAX; i++)
                if (streq(entry_type_table[i], s))
                        return (ManifestEntryType) i;
        return _MANIFEST_ENTRY_TYPE_INVALID;
}

/* Problems shared by paths and targets. */
static const char *name_chars_check(const char *s, size_t n) {
        if (!manifest_utf8_is_valid(s, n))
                return "not valid UTF-8";
        for (size_t i = 0; i < n; i++) {
                if (is_control((unsigned char) s[i]))
                        return "control character";
                if (s[i] == '\\')
                        return "backslash";
        }
        return NULL;
}

const char *manifest_path_check(const char *path) {
        const char *why;
        size_t n;

        if (isempty(path))
                return "must not be empty";
        n = strlen(path);
        if (n > MANIFEST_PATH_MAX)
                return "longer than 4096 bytes";
        why = name_chars_check(path, n);
        if (why)
                return why;
        if (path[0] == '/')
                return "absolute path";
        for (const char *c = path;; c++) {
                size_t l = strcspn(c, "/");

                if (l == 0)
                        return "empty component";
                if (l == 1 && c[0] == '.')
                        return "\".\" component";
                if (l == 2 && c[0] == '.' && c[1] == '.')
                        return "\"..\" component";
                if (l > MANIFEST_NAME_MAX)
                        return "component longer than 255 bytes";
                c += l;
                if (!*c)
                        return NULL;
        }
}

/* Whether every component of s is "" or "." (what is left of a target after a component). */
static bool rest_is_empty(const char *s) {
        for (;;) {
                size_t l = strcspn(s, "/");

                if (l > 1 || (l == 1 && s[0] != '.'))
                        return false;
                if (!s[l])
                        return true;
                s += l + 1;
        }
}

/* A symlink target on its own: relative, and staying inside the snapshot when resolved lexically
 * from the link's directory (path must be valid). Whether it passes through another symlink of the
 * manifest is for manifest_validate(). */
static const char *target_check(const char *path, const char *target) {
        size_t n, depth = 0;
        const char *why;

        if (isempty(target))
                return "must not be empty";
        n = strlen(target);
        if (n > MANIFEST_TARGET_MAX)
                return "longer than 4095 bytes";
        why = name_chars_check(target, n);
        if (why)
                return why;
        if (target[0] == '/')
                return "absolute target";
        for (const char *p = path; *p; p++)
                if (*p == '/')
                        depth++;
        for (const char *c = target;;) {
                size_t l = strcspn(c, "/");

                if (l == 2 && c[0] == '.' && c[1] == '.') {
                        if (depth == 0)
                                return "leaves the snapshot";
                        depth--;
                } else if (l > MANIFEST_NAME_MAX)
                        return "component longer than 255 bytes";
                else if (l > 1 || (l == 1 && c[0] != '.'))
                        depth++;
                if (!c[l])
                        return NULL;
                c += l + 1;
        }
}

static int writer_fields_check(const char *instance_id, const char *boot_id, const char *hostname,
                               char **error) {
        static const char *names[] = { "instance_id", "boot_id", "hostname" };
        const char *values[] = { instance_id, boot_id, hostname };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                if (!values[i])
                        return first_problem(error, -EINVAL, "writer.%s: required", names[i]);
                if (!snapshot_writer_field_is_valid(values[i]))
                        return first_problem(error, -EINVAL,
                                       "writer.%s: must be 1 to 255 printable ASCII characters without spaces",
                                       names[i]);
        }
        return 0;
}

static int writer_copy(SnapshotWriter *w, const char *instance_id, const char *boot_id, const char *hostname) {
        w->instance_id = strdup(instance_id);
        w->boot_id = strdup(boot_id);
        w->hostname = strdup(hostname);
        return w->instance_id && w->boot_id && w->hostname ? 0 : -ENOMEM;
}

static void writer_done(SnapshotWriter *w) {
        free(w->instance_id);
        free(w->boot_id);
        free(w->hostname);
        *w = (SnapshotWriter) {};
}

static int job_check(const char *job, char **error) {
        char q[CONFIG_QUOTE_MAX];

        if (!job)
                return first_problem(error, -EINVAL, "job: required");
        if (!config_job_id_is_valid(job))
                return first_problem(error, -EINVAL, "job: invalid job id %s", config_quote(job, q));
        return 0;
}

/* ---- the manifest: entries */

static void manifest_entry_done(ManifestEntry *e) {
        free(e->path);
        free(e->parts);
        free(e->target);
        *e = (ManifestEntry) {};
}

Manifest *manifest_free(Manifest *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_entries; i++)
                manifest_entry_done(&m->entries[i]);
        free(m->entries);
        free(m->job);
        free(m->task);
        free(m->parent);
        writer_done(&m->writer);
        return mfree(m);
}

static int parts_check(const ManifestEntry *e, char **error) {
        size_t i = e->index;
        uint64_t sum = 0;

        if (e->part_size == 0 && e->n_parts == 0)
                return 0;
        if (e->part_size == 0)
                return first_problem(error, -EINVAL, "files[%zu].part_size: required with parts", i);
        if (e->n_parts == 0)
                return first_problem(error, -EINVAL, "files[%zu].parts: required with part_size", i);
        if (e->part_size > MANIFEST_FILE_SIZE_MAX)
                return first_problem(error, -EINVAL, "files[%zu].part_size: must be between 1 and %" PRIu64, i,
                               MANIFEST_FILE_SIZE_MAX);
        if (e->n_parts > MANIFEST_PARTS_MAX)
                return first_problem(error, -EINVAL, "files[%zu].parts: more than %u parts", i, MANIFEST_PARTS_MAX);
        for (size_t k = 0; k < e->n_parts; k++) {
                const ManifestPart *p = &e->parts[k];
                bool last = k + 1 == e->n_parts;

                if (!sha256_hex_valid(p->sha256))
                        return first_problem(error, -EINVAL,
                                       "files[%zu].parts[%zu].sha256: must be 64 lowercase hex digits", i, k);
                if (!last && p->size != e->part_size)
                        return first_problem(error, -EINVAL,
                                       "files[%zu].parts[%zu].size: must be part_size (%" PRIu64 "), "
                                       "only the last part may be shorter", i, k, e->part_size);
                if (last && (p->size < 1 || p->size > e->part_size))
                        return first_problem(error, -EINVAL,
                                       "files[%zu].parts[%zu].size: must be between 1 and part_size (%" PRIu64 ")",
                                       i, k, e->part_size);
                sum += p->size; /* ≤ 10000 × 2^50: no overflow */
        }
        if (sum != e->size)
                return first_problem(error, -EINVAL,
                               "files[%zu].parts: sizes sum to %" PRIu64 ", not the file's size %" PRIu64, i, sum,
                               e->size);
        return 0;
}

/* The rules for one entry on its own. */
static int entry_check(const ManifestEntry *e, char **error) {
        size_t i = e->index;
        const char *why;

        why = manifest_path_check(e->path);
        if (why)
                return first_problem(error, -EINVAL, "files[%zu].path: %s", i, why);
        if (e->type != MANIFEST_ENTRY_SYMLINK && e->mode > MANIFEST_MODE_MAX)
                return first_problem(error, -EINVAL, "files[%zu].mode: must be between 0 and %u", i,
                               MANIFEST_MODE_MAX);

        switch (e->type) {
        case MANIFEST_ENTRY_FILE:
                if (e->size > MANIFEST_FILE_SIZE_MAX)
                        return first_problem(error, -EINVAL, "files[%zu].size: must be between 0 and %" PRIu64, i,
                                       MANIFEST_FILE_SIZE_MAX);
                if (e->mtime_ns > MANIFEST_MTIME_NS_MAX)
                        return first_problem(error, -EINVAL, "files[%zu].mtime_ns: must be at most %" PRIu64, i,
                                       MANIFEST_MTIME_NS_MAX);
                if (!sha256_hex_valid(e->sha256))
                        return first_problem(error, -EINVAL, "files[%zu].sha256: must be 64 lowercase hex digits", i);
                return parts_check(e, error);
        case MANIFEST_ENTRY_DIR:
                return 0;
        case MANIFEST_ENTRY_SYMLINK:
                why = target_check(e->path, e->target);
                if (why)
                        return first_problem(error, -EINVAL, "files[%zu].target: %s", i, why);
                return 0;
        default:
                return first_problem(error, -EINVAL, "files[%zu].type: unknown type", i);
        }
}

/* Takes *e (checked) on success. */
static int manifest_append(Manifest *m, ManifestEntry *e, char **error) {
        if (m->n_entries >= MANIFEST_ENTRIES_MAX)
                return first_problem(error, -EINVAL, "files: more than %u entries", MANIFEST_ENTRIES_MAX);
        if (e->type == MANIFEST_ENTRY_FILE && e->size > MANIFEST_FILE_SIZE_MAX - m->bytes)
                return first_problem(error, -EINVAL,
                               "files[%zu].size: the files would hold more than %" PRIu64 " bytes", e->index,
                               MANIFEST_FILE_SIZE_MAX);
        if (m->n_entries == m->n_allocated) {
                size_t n = MAX(m->n_allocated * 2, (size_t) 64);
                ManifestEntry *a = reallocarray(m->entries, n, sizeof(ManifestEntry));

                if (!a)
                        return -ENOMEM;
                m->entries = a;
                m->n_allocated = n;
        }
        if (m->n_entries > 0 && strcmp(m->entries[m->n_entries - 1].path, e->path) >= 0)
                m->sorted = false;
        if (e->type == MANIFEST_ENTRY_FILE)
                m->bytes += e->size;
        m->entries[m->n_entries++] = *e;
        *e = (ManifestEntry) {};
        m->validated = false;
        return 0;
}

static int manifest_add(Manifest *m, ManifestEntry *e, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (!e->path || (e->type == MANIFEST_ENTRY_SYMLINK && !e->target))
                return -ENOMEM;
        r = entry_check(e, &error);
        if (r >= 0)
                r = manifest_append(m, e, &error);
        return finish(r, &error, ret_error);
}

int manifest_add_file(Manifest *m, const char *path, const ManifestFile *f, char **ret_error) {
        _cleanup_(manifest_entry_done) ManifestEntry e = {};

        assert(m && path && f);
        assert(f->n_parts == 0 || f->parts);
        e = (ManifestEntry) { .type = MANIFEST_ENTRY_FILE, .index = m->n_entries, .mode = f->mode,
                              .size = f->size, .mtime_ns = f->mtime_ns, .part_size = f->part_size,
                              .n_parts = f->n_parts };
        if (f->sha256 && strlen(f->sha256) == MANIFEST_SHA256_HEX_LEN)
                memcpy(e.sha256, f->sha256, sizeof(e.sha256));
        /* More than MANIFEST_PARTS_MAX are refused by parts_check() without being looked at. */
        if (f->n_parts > 0 && f->n_parts <= MANIFEST_PARTS_MAX) {
                e.parts = reallocarray(NULL, f->n_parts, sizeof(ManifestPart));
                if (!e.parts)
                        return -ENOMEM;
                memcpy(e.parts, f->parts, f->n_parts * sizeof(ManifestPart));
                for (size_t k = 0; k < f->n_parts; k++)
                        e.parts[k].sha256[MANIFEST_SHA256_HEX_LEN] = '\0';
        }
        e.path = strdup(path);
        return manifest_add(m, &e, ret_error);
}

int manifest_add_dir(Manifest *m, const char *path, unsigned mode, char **ret_error) {
        _cleanup_(manifest_entry_done) ManifestEntry e = {};

        assert(m && path);
        e = (ManifestEntry) { .type = MANIFEST_ENTRY_DIR, .index = m->n_entries, .mode = mode };
        e.path = strdup(path);
        return manifest_add(m, &e, ret_error);
}

int manifest_add_symlink(Manifest *m, const char *path, const char *target, char **ret_error) {
        _cleanup_(manifest_entry_done) ManifestEntry e = {};

        assert(m && path && target);
        e = (ManifestEntry) { .type = MANIFEST_ENTRY_SYMLINK, .index = m->n_entries };
        e.path = strdup(path);
        e.target = strdup(target);
        return manifest_add(m, &e, ret_error);
}

/* ---- the manifest: header */

static int manifest_header_check(const ManifestParams *p, SnapshotId *ret_id, char **error) {
        char q[CONFIG_QUOTE_MAX], w[SNAPSHOT_WRITER_LEN + 1];
        SnapshotId id;
        int r;

        if (!p->id)
                return first_problem(error, -EINVAL, "id: required");
        if (snapshot_id_parse(p->id, &id) < 0)
                return first_problem(error, -EINVAL, "id: invalid snapshot id %s", config_quote(p->id, q));
        r = job_check(p->job, error);
        if (r < 0)
                return r;
        if (!p->task)
                return first_problem(error, -EINVAL, "task: required");
        if (!config_task_name_is_valid(p->task))
                return first_problem(error, -EINVAL, "task: invalid task name %s", config_quote(p->task, q));
        r = writer_fields_check(p->instance_id, p->boot_id, p->hostname, error);
        if (r < 0)
                return r;
        r = snapshot_writer_id(p->instance_id, p->boot_id, w);
        if (r < 0)
                return r;
        if (!streq(w, id.writer))
                return first_problem(error, -EINVAL,
                               "id: writer \"%s\" does not match writer.instance_id and writer.boot_id (\"%s\")",
                               id.writer, w);
        if (p->parent && !snapshot_id_is_valid(p->parent))
                return first_problem(error, -EINVAL, "parent: invalid snapshot id %s", config_quote(p->parent, q));
        if (p->parent && snapshot_id_compare(p->parent, p->id) >= 0)
                return first_problem(error, -EINVAL, "parent: \"%s\" is not older than the snapshot", p->parent);
        *ret_id = id;
        return 0;
}

static int manifest_new_internal(const ManifestParams *p, Manifest **ret, char **error) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        SnapshotId id;
        int r;

        assert(p && ret);
        r = manifest_header_check(p, &id, error);
        if (r < 0)
                return r;
        m = calloc(1, sizeof(Manifest));
        if (!m)
                return -ENOMEM;
        memcpy(m->id, p->id, SNAPSHOT_ID_MAX);
        m->seq = id.seq;
        m->created_at = id.time;
        m->sorted = true;
        m->job = strdup(p->job);
        m->task = strdup(p->task);
        if (!m->job || !m->task || writer_copy(&m->writer, p->instance_id, p->boot_id, p->hostname) < 0)
                return -ENOMEM;
        if (p->parent && !(m->parent = strdup(p->parent)))
                return -ENOMEM;
        *ret = TAKE_PTR(m);
        return 0;
}

int manifest_new(const ManifestParams *p, Manifest **ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        return finish(manifest_new_internal(p, ret, &error), &error, ret_error);
}

/* ---- the manifest: the rules that involve several entries */

static int entry_compare(const void *a, const void *b) {
        const ManifestEntry *x = a, *y = b;
        int c = strcmp(x->path, y->path);

        if (c != 0)
                return c;
        return (x->index > y->index) - (x->index < y->index);
}

static int entry_path_compare(const void *key, const void *b) {
        return strcmp(key, ((const ManifestEntry *) b)->path);
}

const ManifestEntry *manifest_find(const Manifest *m, const char *path) {
        if (!m || !path || m->n_entries == 0)
                return NULL;
        if (m->sorted)
                return bsearch(path, m->entries, m->n_entries, sizeof(ManifestEntry), entry_path_compare);
        for (size_t i = 0; i < m->n_entries; i++)
                if (streq(m->entries[i].path, path))
                        return &m->entries[i];
        return NULL;
}

static int check_parent(const Manifest *m, const ManifestEntry *e, char **error) {
        char parent[MANIFEST_PATH_MAX + 1], q[CONFIG_QUOTE_MAX];
        const char *slash = strrchr(e->path, '/');
        const ManifestEntry *p;
        size_t n;

        if (!slash)
                return 0;
        n = (size_t) (slash - e->path);
        memcpy(parent, e->path, n);
        parent[n] = '\0';
        p = manifest_find(m, parent);
        if (!p)
                return first_problem(error, -EINVAL, "files[%zu].path: parent %s is not in the manifest", e->index,
                               config_quote(parent, q));
        if (p->type != MANIFEST_ENTRY_DIR)
                return first_problem(error, -EINVAL, "files[%zu].path: parent %s is a %s (files[%zu])", e->index,
                               config_quote(parent, q), manifest_entry_type_to_string(p->type), p->index);
        return 0;
}

/* Walks the target of symlink e lexically from its directory, as the kernel would (target_check()
 * made sure it never climbs above the root), and refuses every step that lands on a symlink of the
 * manifest: restore must never create a link that leads through or to another of its links. */
static int check_symlink_walk(const Manifest *m, const ManifestEntry *e, char **error) {
        char buf[MANIFEST_PATH_MAX + MANIFEST_TARGET_MAX + 2], q[CONFIG_QUOTE_MAX];
        const char *slash = strrchr(e->path, '/'), *c = e->target;
        size_t len = slash ? (size_t) (slash - e->path) : 0;

        memcpy(buf, e->path, len);
        buf[len] = '\0';
        for (;;) {
                size_t l = strcspn(c, "/");
                const char *next = c[l] ? c + l + 1 : c + l;

                if (l == 2 && c[0] == '.' && c[1] == '.') {
                        while (len > 0 && buf[len - 1] != '/')
                                len--;
                        len = len > 0 ? len - 1 : 0;
                        buf[len] = '\0';
                } else if (l > 1 || (l == 1 && c[0] != '.')) {
                        const ManifestEntry *f;

                        if (len > 0)
                                buf[len++] = '/';
                        memcpy(buf + len, c, l);
                        len += l;
                        buf[len] = '\0';
                        f = manifest_find(m, buf);
                        if (f && f->type == MANIFEST_ENTRY_SYMLINK)
                                return first_problem(error, -EINVAL, "files[%zu].target: %s symlink %s (files[%zu])",
                                               e->index, rest_is_empty(next) ? "points to" : "passes through",
                                               config_quote(buf, q), f->index);
                }
                if (!c[l])
                        return 0;
                c = next;
        }
}

static int file_sha_compare(const void *a, const void *b) {
        const ManifestEntry *x = *(const ManifestEntry * const *) a, *y = *(const ManifestEntry * const *) b;
        int c = strcmp(x->sha256, y->sha256);

        if (c != 0)
                return c;
        return (x->index > y->index) - (x->index < y->index);
}

/* Content addressing: one sha256, one object, one size. */
static int check_sizes_per_object(const Manifest *m, char **error) {
        _cleanup_free_ const ManifestEntry **files = NULL;
        size_t n = 0;

        files = reallocarray(NULL, MAX(m->n_entries, (size_t) 1), sizeof(ManifestEntry *));
        if (!files)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_entries; i++)
                if (m->entries[i].type == MANIFEST_ENTRY_FILE)
                        files[n++] = &m->entries[i];
        qsort(files, n, sizeof(ManifestEntry *), file_sha_compare);
        for (size_t i = 1; i < n; i++)
                if (streq(files[i - 1]->sha256, files[i]->sha256) && files[i - 1]->size != files[i]->size)
                        return first_problem(error, -EINVAL,
                                       "files[%zu].size: %" PRIu64 " differs from files[%zu] (%" PRIu64
                                       "), which has the same sha256",
                                       files[i]->index, files[i]->size, files[i - 1]->index, files[i - 1]->size);
        return 0;
}

static int manifest_validate_internal(Manifest *m, char **error) {
        int r;

        if (m->validated)
                return 0;
        if (!m->sorted) {
                qsort(m->entries, m->n_entries, sizeof(ManifestEntry), entry_compare);
                m->sorted = true;
        }
        for (size_t i = 1; i < m->n_entries; i++)
                if (streq(m->entries[i - 1].path, m->entries[i].path))
                        return first_problem(error, -EINVAL, "files[%zu].path: duplicate of files[%zu]",
                                       m->entries[i].index, m->entries[i - 1].index);
        for (size_t i = 0; i < m->n_entries; i++) {
                r = check_parent(m, &m->entries[i], error);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < m->n_entries; i++)
                if (m->entries[i].type == MANIFEST_ENTRY_SYMLINK) {
                        r = check_symlink_walk(m, &m->entries[i], error);
                        if (r < 0)
                                return r;
                }
        r = check_sizes_per_object(m, error);
        if (r < 0)
                return r;
        m->validated = true;
        return 0;
}

int manifest_validate(Manifest *m, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        assert(m);
        return finish(manifest_validate_internal(m, &error), &error, ret_error);
}

char *manifest_entry_object_key(const ManifestEntry *e, char buf[static MANIFEST_OBJECT_KEY_MAX]) {
        (void) snprintf(buf, MANIFEST_OBJECT_KEY_MAX, OBJECT_PREFIX "%s", e->sha256);
        return buf;
}

static int string_compare(const void *a, const void *b) {
        return strcmp(*(const char * const *) a, *(const char * const *) b);
}

int manifest_object_keys(const Manifest *m, char ***ret) {
        _cleanup_free_ const char **shas = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        size_t n = 0, k = 0;

        assert(m && ret);
        shas = reallocarray(NULL, MAX(m->n_entries, (size_t) 1), sizeof(char *));
        if (!shas)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_entries; i++)
                if (m->entries[i].type == MANIFEST_ENTRY_FILE)
                        shas[n++] = m->entries[i].sha256;
        qsort(shas, n, sizeof(char *), string_compare);
        keys = calloc(n + 1, sizeof(char *));
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && streq(shas[i - 1], shas[i]))
                        continue;
                if (asprintf(&keys[k], OBJECT_PREFIX "%s", shas[i]) < 0) {
                        keys[k] = NULL;
                        return -ENOMEM;
                }
                k++;
        }
        *ret = TAKE_PTR(keys);
        return 0;
}

/* ---- writing JSON */

static void json_write_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const char *run = s;; s++) {
                unsigned char c = (unsigned char) *s;

                if (c != '\0' && c != '"' && c != '\\' && c >= 0x20)
                        continue;
                fwrite(run, 1, (size_t) (s - run), f);
                if (c == '\0')
                        break;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else
                        fprintf(f, "\\u%04x", c);
                run = s + 1;
        }
        fputc('"', f);
}

static void json_write_string_or_null(FILE *f, const char *s) {
        if (s)
                json_write_string(f, s);
        else
                fputs("null", f);
}

static void json_write_writer(FILE *f, const SnapshotWriter *w) {
        fputs("  \"writer\": {\"instance_id\": ", f);
        json_write_string(f, w->instance_id);
        fputs(", \"boot_id\": ", f);
        json_write_string(f, w->boot_id);
        fputs(", \"hostname\": ", f);
        json_write_string(f, w->hostname);
        fputs("},\n", f);
}

static void json_write_entry(FILE *f, const ManifestEntry *e) {
        fputs("    {\"path\": ", f);
        json_write_string(f, e->path);
        fprintf(f, ", \"type\": \"%s\"", manifest_entry_type_to_string(e->type));
        switch (e->type) {
        case MANIFEST_ENTRY_FILE:
                fprintf(f, ", \"size\": %" PRIu64 ", \"mode\": %u, \"mtime_ns\": \"%" PRIu64 "\""
                        ", \"sha256\": \"%s\", \"object\": \"" OBJECT_PREFIX "%s\"",
                        e->size, e->mode, e->mtime_ns, e->sha256, e->sha256);
                if (e->n_parts == 0)
                        break;
                fprintf(f, ", \"part_size\": %" PRIu64 ", \"parts\": [", e->part_size);
                for (size_t k = 0; k < e->n_parts; k++)
                        fprintf(f, "%s{\"size\": %" PRIu64 ", \"sha256\": \"%s\"}", k > 0 ? ", " : "",
                                e->parts[k].size, e->parts[k].sha256);
                fputc(']', f);
                break;
        case MANIFEST_ENTRY_DIR:
                fprintf(f, ", \"mode\": %u", e->mode);
                break;
        case MANIFEST_ENTRY_SYMLINK:
                fputs(", \"target\": ", f);
                json_write_string(f, e->target);
                break;
        default:
                assert(false); /* entries are checked when added */
                break;
        }
        fputc('}', f);
}

/* Closes the stream of open_memstream(); its buffer is then complete, or freed on failure. */
static int memstream_finish(FILE *f, char **buf, size_t *len, char **ret, size_t *ret_len) {
        bool failed = ferror(f);

        if (fclose(f) != 0 || failed) {
                *buf = mfree(*buf);
                return -ENOMEM;
        }
        *ret = TAKE_PTR(*buf);
        if (ret_len)
                *ret_len = *len;
        return 0;
}

static int manifest_to_json_internal(Manifest *m, char **ret, size_t *ret_len, char **error) {
        _cleanup_free_ char *buf = NULL;
        char t[RFC3339_MAX];
        size_t len = 0;
        FILE *f;
        int r;

        r = manifest_validate_internal(m, error);
        if (r < 0)
                return r;
        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fprintf(f, "{\n  \"format\": \"" MANIFEST_FORMAT "\",\n  \"version\": %u,\n  \"id\": \"%s\",\n"
                "  \"seq\": %" PRIu64 ",\n  \"job\": ", MANIFEST_VERSION, m->id, m->seq);
        json_write_string(f, m->job);
        fputs(",\n  \"task\": ", f);
        json_write_string(f, m->task);
        fprintf(f, ",\n  \"created_at\": \"%s\",\n", format_rfc3339(t, m->created_at));
        json_write_writer(f, &m->writer);
        fputs("  \"parent\": ", f);
        json_write_string_or_null(f, m->parent);
        fprintf(f, ",\n  \"bytes\": %" PRIu64 ",\n  \"count\": %zu,\n  \"files\": [", m->bytes, m->n_entries);
        for (size_t i = 0; i < m->n_entries; i++) {
                fputs(i > 0 ? ",\n" : "\n", f);
                json_write_entry(f, &m->entries[i]);
        }
        fputs(m->n_entries > 0 ? "\n  ]\n}\n" : "]\n}\n", f);
        return memstream_finish(f, &buf, &len, ret, ret_len);
}

int manifest_to_json(Manifest *m, char **ret, size_t *ret_len, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        assert(m && ret);
        return finish(manifest_to_json_internal(m, ret, ret_len, &error), &error, ret_error);
}

static int read_sha256_value(JsonReader *j, const char *label, char ret[static MANIFEST_SHA256_HEX_LEN + 1]) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = json_read_string_value(j, label, &s);
        if (r < 0)
                return r;
        if (!sha256_hex_valid(s))
                return json_schema_error(j, label, "must be 64 lowercase hex digits");
        memcpy(ret, s, MANIFEST_SHA256_HEX_LEN + 1);
        return 0;
}

/* A decimal integer in a string ("1763913600123456789"): 64-bit values do not survive the doubles
 * that many JSON readers turn numbers into. */
static int read_mtime_value(JsonReader *j, const char *label, uint64_t *ret) {
        _cleanup_free_ char *s = NULL;
        uint64_t v = 0;
        size_t n;
        int r;

        r = json_read_string_value(j, label, &s);
        if (r < 0)
                return r;
        n = strlen(s);
        if (n == 0 || n > 19 || strspn(s, "0123456789") != n || (s[0] == '0' && n > 1))
                return json_schema_error(j, label,
                                    "must be a decimal integer in a string, like \"1763913600123456789\"");
        for (size_t i = 0; i < n; i++)
                v = v * 10 + (uint64_t) (s[i] - '0'); /* 19 digits fit in 64 bits */
        if (v > MANIFEST_MTIME_NS_MAX)
                return first_problem(j->error, -EBADMSG, "%s: must be at most %" PRIu64, label, MANIFEST_MTIME_NS_MAX);
        *ret = v;
        return 0;
}

/* ---- documents: size, syntax, "format" and "version", before any schema */

typedef struct DocumentType {
        const char *what;       /* "manifest", "marker": names whole-document problems */
        const char *format;
        unsigned version;
        size_t size_max;
} DocumentType;

/* Checks the whole document's syntax, and that it is an object; *ret_format and *ret_version point at
 * the values of the first "format" and "version" members (NULL when absent). */
static int document_scan(JsonReader *j, const DocumentType *t, const char **ret_format,
                         const char **ret_version) {
        bool first = true;
        int r;

        if (json_peek(j) != '{') {
                r = json_skip_value(j, 0);
                if (r < 0)
                        return r;
                return first_problem(j->error, -EBADMSG, "%s: must be a JSON object", t->what);
        }
        j->p++;
        for (;;) {
                _cleanup_free_ char *key = NULL;

                r = json_object_next(j, &first, &key);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (streq(key, "format") && !*ret_format)
                        *ret_format = j->p;
                if (streq(key, "version") && !*ret_version)
                        *ret_version = j->p;
                r = json_skip_value(j, 1);
                if (r < 0)
                        return r;
        }
        if (json_peek(j) >= 0)
                return json_unexpected(j, "the end of the data");
        return 0;
}

static int document_check_version(JsonReader *j, const char *at) {
        JsonNumber n;
        int r;

        if (!at)
                return first_problem(j->error, -EBADMSG, "version: required");
        j->p = at;
        if (*at != '-' && !is_digit(*at))
                return first_problem(j->error, -EBADMSG, "version: must be an integer");
        r = json_read_number(j, &n);
        if (r < 0)
                return r;
        if (!n.integer)
                return first_problem(j->error, -EBADMSG, "version: must be an integer");
        if (n.negative || n.overflow || n.value == 0)
                return first_problem(j->error, -EBADMSG, "version: unknown version %.*s",
                               (int) MIN(n.len, (size_t) 32), n.text);
        if (n.value > MANIFEST_VERSION)
                return first_problem(j->error, -EPROTONOSUPPORT,
                               "version: written by a newer trainsupd (version %" PRIu64 ")", n.value);
        return 0;
}

/* Everything before the schema: the size, the syntax, the format, the version. */
static int document_check(const char *data, size_t len, const DocumentType *t, char **error) {
        _cleanup_free_ char *format = NULL;
        const char *format_at = NULL, *version_at = NULL;
        JsonReader j = { .begin = data, .p = data, .end = data + len, .error = error };
        char q[CONFIG_QUOTE_MAX];
        int r;

        if (len > t->size_max)
                return first_problem(error, -EBADMSG, "%s: larger than %zu bytes", t->what, t->size_max);
        if (!data || len == 0)
                return first_problem(error, -EBADMSG, "%s: empty", t->what);
        r = document_scan(&j, t, &format_at, &version_at);
        if (r < 0)
                return r;
        if (!format_at)
                return first_problem(error, -EBADMSG, "format: required");
        j.p = format_at;
        r = json_read_string_value(&j, "format", &format);
        if (r < 0)
                return r;
        if (!streq(format, t->format))
                return first_problem(error, -EBADMSG, "format: unknown format %s (expected \"%s\")",
                               config_quote(format, q), t->format);
        assert(t->version == MANIFEST_VERSION && t->version == COMPLETION_VERSION);
        return document_check_version(&j, version_at);
}

/* ---- the manifest's schema */

static const char * const writer_keys[] = { "instance_id", "boot_id", "hostname", "ext" };

static int read_writer(JsonReader *j, const char *label, unsigned depth, SnapshotWriter *w) {
        char kl[JSON_LABEL_MAX];
        bool first = true;
        uint32_t seen = 0;
        size_t k;
        int r;

        r = json_object_begin(j, label);
        if (r < 0)
                return r;
        for (;;) {
                r = json_read_member(j, label, writer_keys, ELEMENTSOF(writer_keys), &first, &seen, &k, kl);
                if (r <= 0)
                        break;
                r = k == 0 ? json_read_string_value(j, kl, &w->instance_id) :
                    k == 1 ? json_read_string_value(j, kl, &w->boot_id) :
                    k == 2 ? json_read_string_value(j, kl, &w->hostname) : json_read_ext(j, kl, depth + 1);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return json_check_required(j, label, writer_keys, ELEMENTSOF(writer_keys), 0x7, seen);
}

static const char * const part_keys[] = { "size", "sha256", "ext" };

static int read_part(JsonReader *j, const char *label, ManifestPart *ret) {
        char kl[JSON_LABEL_MAX];
        bool first = true;
        uint32_t seen = 0;
        size_t k;
        int r;

        r = json_object_begin(j, label);
        if (r < 0)
                return r;
        for (;;) {
                r = json_read_member(j, label, part_keys, ELEMENTSOF(part_keys), &first, &seen, &k, kl);
                if (r <= 0)
                        break;
                r = k == 0 ? json_read_uint_value(j, kl, 0, MANIFEST_FILE_SIZE_MAX, &ret->size) :
                    k == 1 ? read_sha256_value(j, kl, ret->sha256) : json_read_ext(j, kl, 5);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return json_check_required(j, label, part_keys, ELEMENTSOF(part_keys), 0x3, seen);
}

static int read_parts(JsonReader *j, const char *label, ManifestPart **ret, size_t *ret_n) {
        _cleanup_free_ ManifestPart *parts = NULL;
        size_t n = 0, allocated = 0;
        char pl[JSON_LABEL_MAX + 24];
        bool first = true;
        int r;

        r = json_array_begin(j, label);
        if (r < 0)
                return r;
        for (;;) {
                r = json_array_next(j, &first);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n >= MANIFEST_PARTS_MAX)
                        return first_problem(j->error, -EBADMSG, "%s: more than %u parts", label, MANIFEST_PARTS_MAX);
                if (n == allocated) {
                        ManifestPart *a;

                        allocated = MAX(allocated * 2, (size_t) 16);
                        a = reallocarray(parts, allocated, sizeof(ManifestPart));
                        if (!a)
                                return -ENOMEM;
                        parts = a;
                }
                parts[n] = (ManifestPart) {};
                (void) snprintf(pl, sizeof(pl), "%s[%zu]", label, n);
                r = read_part(j, pl, &parts[n++]);
                if (r < 0)
                        return r;
        }
        if (n == 0)
                return json_schema_error(j, label, "must not be empty");
        free(*ret);
        *ret = TAKE_PTR(parts);
        *ret_n = n;
        return 0;
}

enum {
        EK_PATH, EK_TYPE, EK_SIZE, EK_MODE, EK_MTIME_NS, EK_SHA256, EK_OBJECT, EK_PART_SIZE, EK_PARTS, EK_TARGET,
        EK_EXT,
};
#define EK(k) (UINT32_C(1) << (k))

static const char * const entry_keys[] = {
        [EK_PATH] = "path", [EK_TYPE] = "type", [EK_SIZE] = "size", [EK_MODE] = "mode",
        [EK_MTIME_NS] = "mtime_ns", [EK_SHA256] = "sha256", [EK_OBJECT] = "object",
        [EK_PART_SIZE] = "part_size", [EK_PARTS] = "parts", [EK_TARGET] = "target", [EK_EXT] = "ext",
};

static const uint32_t entry_required[_MANIFEST_ENTRY_TYPE_MAX] = {
        [MANIFEST_ENTRY_FILE] = EK(EK_PATH) | EK(EK_TYPE) | EK(EK_SIZE) | EK(EK_MODE) | EK(EK_MTIME_NS) |
                                EK(EK_SHA256) | EK(EK_OBJECT),
        [MANIFEST_ENTRY_DIR] = EK(EK_PATH) | EK(EK_TYPE) | EK(EK_MODE),
        [MANIFEST_ENTRY_SYMLINK] = EK(EK_PATH) | EK(EK_TYPE) | EK(EK_TARGET),
};

static const uint32_t entry_optional[_MANIFEST_ENTRY_TYPE_MAX] = {
        [MANIFEST_ENTRY_FILE] = EK(EK_PART_SIZE) | EK(EK_PARTS) | EK(EK_EXT),
        [MANIFEST_ENTRY_DIR] = EK(EK_EXT),
        [MANIFEST_ENTRY_SYMLINK] = EK(EK_EXT),
};

static int read_entry_member(JsonReader *j, size_t k, const char *kl, ManifestEntry *e, char **type,
                             char **object) {
        uint64_t v;
        int r;

        switch (k) {
        case EK_PATH:
                return json_read_string_value(j, kl, &e->path);
        case EK_TYPE:
                return json_read_string_value(j, kl, type);
        case EK_SIZE:
                return json_read_uint_value(j, kl, 0, MANIFEST_FILE_SIZE_MAX, &e->size);
        case EK_MODE:
                r = json_read_uint_value(j, kl, 0, MANIFEST_MODE_MAX, &v);
                e->mode = (unsigned) v;
                return r;
        case EK_MTIME_NS:
                return read_mtime_value(j, kl, &e->mtime_ns);
        case EK_SHA256:
                return read_sha256_value(j, kl, e->sha256);
        case EK_OBJECT:
                return json_read_string_value(j, kl, object);
        case EK_PART_SIZE:
                return json_read_uint_value(j, kl, 1, MANIFEST_FILE_SIZE_MAX, &e->part_size);
        case EK_PARTS:
                return read_parts(j, kl, &e->parts, &e->n_parts);
        case EK_TARGET:
                return json_read_string_value(j, kl, &e->target);
        default:
                return json_read_ext(j, kl, 3);
        }
}

/* The keys an entry of its type must and may have. */
static int entry_keys_check(JsonReader *j, const char *label, const char *type, uint32_t seen,
                            ManifestEntry *e) {
        char kl[JSON_LABEL_MAX], q[CONFIG_QUOTE_MAX];
        ManifestEntryType t;
        int r;

        r = json_check_required(j, label, entry_keys, ELEMENTSOF(entry_keys), EK(EK_PATH) | EK(EK_TYPE), seen);
        if (r < 0)
                return r;
        t = manifest_entry_type_from_string(type);
        if (t < 0)
                return first_problem(j->error, -EBADMSG, "%s.type: unknown type %s", label, config_quote(type, q));
        for (size_t i = 0; i < ELEMENTSOF(entry_keys); i++)
                if ((seen & ~(entry_required[t] | entry_optional[t])) & EK(i))
                        return first_problem(j->error, -EBADMSG, "%s: not allowed for type \"%s\"",
                                       json_label_key(kl, label, entry_keys[i]), type);
        e->type = t;
        return json_check_required(j, label, entry_keys, ELEMENTSOF(entry_keys), entry_required[t], seen);
}

static bool object_key_matches(const char *object, const char *sha256) {
        size_t n = strlen(OBJECT_PREFIX);

        return strneq(object, OBJECT_PREFIX, n) && streq(object + n, sha256);
}

static int read_entry(JsonReader *j, size_t index, Manifest *holder) {
        _cleanup_(manifest_entry_done) ManifestEntry e = {};
        _cleanup_free_ char *type = NULL, *object = NULL;
        char label[JSON_LABEL_MAX], kl[JSON_LABEL_MAX], q[CONFIG_QUOTE_MAX];
        bool first = true;
        uint32_t seen = 0;
        size_t k;
        int r;

        (void) snprintf(label, sizeof(label), "files[%zu]", index);
        r = json_object_begin(j, label);
        if (r < 0)
                return r;
        for (;;) {
                r = json_read_member(j, label, entry_keys, ELEMENTSOF(entry_keys), &first, &seen, &k, kl);
                if (r <= 0)
                        break;
                r = read_entry_member(j, k, kl, &e, &type, &object);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = entry_keys_check(j, label, type, seen, &e);
        if (r < 0)
                return r;
        e.index = index;
        r = entry_check(&e, j->error);
        if (r < 0)
                return bad_message(r);
        if (e.type == MANIFEST_ENTRY_FILE && !object_key_matches(object, e.sha256))
                return first_problem(j->error, -EBADMSG,
                               "%s.object: must be \"" OBJECT_PREFIX "<sha256>\" with the entry's sha256, not %s",
                               label, config_quote(object, q));
        return bad_message(manifest_append(holder, &e, j->error));
}

static int read_files(JsonReader *j, Manifest *holder) {
        bool first = true;
        int r;

        r = json_array_begin(j, "files");
        if (r < 0)
                return r;
        for (size_t index = 0;; index++) {
                r = json_array_next(j, &first);
                if (r <= 0)
                        return r;
                r = read_entry(j, index, holder); /* manifest_append() refuses entries past the limit */
                if (r < 0)
                        return r;
        }
}

enum {
        MK_FORMAT, MK_VERSION, MK_ID, MK_SEQ, MK_JOB, MK_TASK, MK_CREATED_AT, MK_WRITER, MK_PARENT, MK_BYTES,
        MK_COUNT, MK_FILES, MK_EXT,
};

static const char * const manifest_keys[] = {
        [MK_FORMAT] = "format", [MK_VERSION] = "version", [MK_ID] = "id", [MK_SEQ] = "seq", [MK_JOB] = "job",
        [MK_TASK] = "task", [MK_CREATED_AT] = "created_at", [MK_WRITER] = "writer", [MK_PARENT] = "parent",
        [MK_BYTES] = "bytes", [MK_COUNT] = "count", [MK_FILES] = "files", [MK_EXT] = "ext",
};

/* What the top level holds, before it becomes a Manifest. */
typedef struct ManifestDoc {
        char *id, *job, *task, *created_at, *parent;
        SnapshotWriter writer;
        uint64_t seq, bytes, count;
        Manifest *holder;       /* the entries, checked one by one */
} ManifestDoc;

static void manifest_doc_done(ManifestDoc *d) {
        free(d->id);
        free(d->job);
        free(d->task);
        free(d->created_at);
        free(d->parent);
        writer_done(&d->writer);
        d->holder = manifest_free(d->holder);
}

static int read_manifest_member(JsonReader *j, size_t k, const char *kl, ManifestDoc *d) {
        switch (k) {
        case MK_ID:
                return json_read_string_value(j, kl, &d->id);
        case MK_SEQ:
                return json_read_uint_value(j, kl, 1, SNAPSHOT_SEQ_MAX, &d->seq);
        case MK_JOB:
                return json_read_string_value(j, kl, &d->job);
        case MK_TASK:
                return json_read_string_value(j, kl, &d->task);
        case MK_CREATED_AT:
                return json_read_string_value(j, kl, &d->created_at);
        case MK_WRITER:
                return read_writer(j, kl, 1, &d->writer);
        case MK_PARENT:
                return json_read_string_or_null(j, kl, &d->parent);
        case MK_BYTES:
                return json_read_uint_value(j, kl, 0, MANIFEST_FILE_SIZE_MAX, &d->bytes);
        case MK_COUNT:
                return json_read_uint_value(j, kl, 0, MANIFEST_ENTRIES_MAX, &d->count);
        case MK_FILES:
                return read_files(j, d->holder);
        case MK_EXT:
                return json_read_ext(j, kl, 1);
        default:
                return json_skip_value(j, 1); /* format, version: checked already */
        }
}

/* The header's own rules (those the builder shares through manifest_new()), then the totals, then the
 * rules that involve several entries. */
static int manifest_doc_finish(ManifestDoc *d, Manifest **ret, char **error) {
        _cleanup_(manifest_freep) Manifest *m = NULL;
        char q[CONFIG_QUOTE_MAX];
        ManifestParams p = { .id = d->id, .job = d->job, .task = d->task, .parent = d->parent,
                             .instance_id = d->writer.instance_id, .boot_id = d->writer.boot_id,
                             .hostname = d->writer.hostname };
        usec_t created;
        int r;

        r = manifest_new_internal(&p, &m, error);
        if (r < 0)
                return bad_message(r);
        if (d->seq != m->seq)
                return first_problem(error, -EBADMSG, "seq: %" PRIu64 " does not match the id (seq %" PRIu64 ")",
                               d->seq, m->seq);
        if (parse_rfc3339_msec(d->created_at, &created) < 0)
                return first_problem(error, -EBADMSG, "created_at: %s is not an RFC 3339 UTC time with milliseconds "
                               "(\"2026-11-23T16:00:00.123Z\")", config_quote(d->created_at, q));
        if (created != m->created_at)
                return first_problem(error, -EBADMSG, "created_at: %s does not match the time in the id",
                               d->created_at);
        if (d->count != d->holder->n_entries)
                return first_problem(error, -EBADMSG, "count: %" PRIu64 " does not match the number of entries (%zu)",
                               d->count, d->holder->n_entries);
        if (d->bytes != d->holder->bytes)
                return first_problem(error, -EBADMSG,
                               "bytes: %" PRIu64 " does not match the sum of the files' sizes (%" PRIu64 ")",
                               d->bytes, d->holder->bytes);
        m->entries = TAKE_PTR(d->holder->entries);
        m->n_entries = d->holder->n_entries;
        m->n_allocated = d->holder->n_allocated;
        m->bytes = d->holder->bytes;
        m->sorted = d->holder->sorted;
        d->holder->n_entries = d->holder->n_allocated = 0;
        r = manifest_validate_internal(m, error);
        if (r < 0)
                return bad_message(r);
        *ret = TAKE_PTR(m);
        return 0;
}

static int manifest_parse_internal(const char *data, size_t len, Manifest **ret, char **error) {
        static const DocumentType type = { "manifest", MANIFEST_FORMAT, MANIFEST_VERSION, MANIFEST_SIZE_MAX };
        _cleanup_(manifest_doc_done) ManifestDoc d = {};
        JsonReader j = { .begin = data, .p = data, .end = data + len, .error = error };
        char kl[JSON_LABEL_MAX];
        bool first = true;
        uint32_t seen = 0;
        size_t k;
        int r;

        r = document_check(data, len, &type, error);
        if (r < 0)
                return r;
        d.holder = calloc(1, sizeof(Manifest));
        if (!d.holder)
                return -ENOMEM;
        d.holder->sorted = true;
        r = json_object_begin(&j, "manifest");
        for (; r >= 0;) {
                r = json_read_member(&j, "", manifest_keys, ELEMENTSOF(manifest_keys), &first, &seen, &k, kl);
                if (r <= 0)
                        break;
                r = read_manifest_member(&j, k, kl, &d);
        }
        if (r < 0)
                return r;
        r = json_check_required(&j, "", manifest_keys, ELEMENTSOF(manifest_keys), EK(MK_EXT) - 1, seen);
        if (r < 0)
                return r;
        return manifest_doc_finish(&d, ret, error);
}

int manifest_parse(const char *data, size_t len, Manifest **ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        assert(ret);
        return finish(manifest_parse_internal(data, len, ret, &error), &error, ret_error);
}

/* ---- the job's completion marker */

JobCompletion *job_completion_free(JobCompletion *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_tasks; i++) {
                free(c->tasks[i].task);
                free(c->tasks[i].last_snapshot);
        }
        free(c->tasks);
        free(c->job);
        writer_done(&c->writer);
        return mfree(c);
}

static int job_completion_new_internal(const JobCompletionParams *p, JobCompletion **ret, char **error) {
        _cleanup_(job_completion_freep) JobCompletion *c = NULL;
        UtcTime t;
        int r;

        assert(p && ret);
        r = job_check(p->job, error);
        if (r < 0)
                return r;
        if (utc_time_from_usec(p->completed_at, &t) < 0)
                return first_problem(error, -EINVAL, "completed_at: not a time between 1970 and 9999");
        r = writer_fields_check(p->instance_id, p->boot_id, p->hostname, error);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(JobCompletion));
        if (!c)
                return -ENOMEM;
        c->completed_at = usec_to_msec_precision(p->completed_at);
        c->job = strdup(p->job);
        if (!c->job || writer_copy(&c->writer, p->instance_id, p->boot_id, p->hostname) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

int job_completion_new(const JobCompletionParams *p, JobCompletion **ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        return finish(job_completion_new_internal(p, ret, &error), &error, ret_error);
}

const JobCompletionTask *job_completion_find_task(const JobCompletion *c, const char *task) {
        for (size_t i = 0; c && task && i < c->n_tasks; i++)
                if (streq(c->tasks[i].task, task))
                        return &c->tasks[i];
        return NULL;
}

/* Keeps the tasks sorted by name. */
static int job_completion_add_task_internal(JobCompletion *c, const char *task, const char *last_snapshot,
                                            char **error) {
        _cleanup_free_ char *t = NULL, *s = NULL;
        char label[JSON_LABEL_MAX], q[CONFIG_QUOTE_MAX];
        JobCompletionTask *a;
        size_t i;

        json_label_key(label, "tasks", task ?: "");
        if (!config_task_name_is_valid(task))
                return first_problem(error, -EINVAL, "%s: invalid task name", label);
        if (job_completion_find_task(c, task))
                return first_problem(error, -EINVAL, "%s: duplicate task", label);
        if (c->n_tasks >= CONFIG_TASKS_MAX)
                return first_problem(error, -EINVAL, "tasks: more than %u tasks", CONFIG_TASKS_MAX);
        if (last_snapshot && !snapshot_id_is_valid(last_snapshot))
                return first_problem(error, -EINVAL, "%s: invalid snapshot id %s", label,
                               config_quote(last_snapshot, q));
        t = strdup(task);
        s = last_snapshot ? strdup(last_snapshot) : NULL;
        a = reallocarray(c->tasks, c->n_tasks + 1, sizeof(JobCompletionTask));
        if (!t || (last_snapshot && !s) || !a)
                return -ENOMEM;
        c->tasks = a;
        for (i = c->n_tasks; i > 0 && strcmp(c->tasks[i - 1].task, task) > 0; i--)
                c->tasks[i] = c->tasks[i - 1];
        c->tasks[i] = (JobCompletionTask) { .task = TAKE_PTR(t), .last_snapshot = TAKE_PTR(s) };
        c->n_tasks++;
        return 0;
}

int job_completion_add_task(JobCompletion *c, const char *task, const char *last_snapshot, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        assert(c);
        return finish(job_completion_add_task_internal(c, task, last_snapshot, &error), &error, ret_error);
}

int job_completion_to_json(const JobCompletion *c, char **ret, size_t *ret_len, char **ret_error) {
        _cleanup_free_ char *error = NULL, *buf = NULL;
        char t[RFC3339_MAX];
        size_t len = 0;
        FILE *f;

        assert(c && ret);
        if (c->n_tasks == 0)
                return finish(first_problem(&error, -EINVAL, "tasks: must not be empty"), &error, ret_error);
        f = open_memstream(&buf, &len);
        if (!f)
                return -ENOMEM;
        fprintf(f, "{\n  \"format\": \"" COMPLETION_FORMAT "\",\n  \"version\": %u,\n  \"job\": ",
                COMPLETION_VERSION);
        json_write_string(f, c->job);
        fprintf(f, ",\n  \"completed_at\": \"%s\",\n", format_rfc3339(t, c->completed_at));
        json_write_writer(f, &c->writer);
        fputs("  \"tasks\": {", f);
        for (size_t i = 0; i < c->n_tasks; i++) {
                fputs(i > 0 ? ",\n    " : "\n    ", f);
                json_write_string(f, c->tasks[i].task);
                fputs(": ", f);
                json_write_string_or_null(f, c->tasks[i].last_snapshot);
        }
        fputs("\n  }\n}\n", f);
        return memstream_finish(f, &buf, &len, ret, ret_len);
}

static int read_completion_tasks(JsonReader *j, JobCompletion *c) {
        bool first = true;
        int r;

        r = json_object_begin(j, "tasks");
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_free_ char *task = NULL, *id = NULL;
                char label[JSON_LABEL_MAX];

                r = json_object_next(j, &first, &task);
                if (r <= 0)
                        break;
                r = json_read_string_or_null(j, json_label_key(label, "tasks", task), &id);
                if (r < 0)
                        return r;
                r = bad_message(job_completion_add_task_internal(c, task, id, j->error));
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return c->n_tasks == 0 ? json_schema_error(j, "tasks", "must not be empty") : 0;
}

enum { CK_FORMAT, CK_VERSION, CK_JOB, CK_COMPLETED_AT, CK_WRITER, CK_TASKS, CK_EXT };

static const char * const completion_keys[] = {
        [CK_FORMAT] = "format", [CK_VERSION] = "version", [CK_JOB] = "job", [CK_COMPLETED_AT] = "completed_at",
        [CK_WRITER] = "writer", [CK_TASKS] = "tasks", [CK_EXT] = "ext",
};

typedef struct CompletionDoc {
        char *job, *completed_at;
        SnapshotWriter writer;
        JobCompletion *tasks;   /* holds the tasks until the header is known */
} CompletionDoc;

static void completion_doc_done(CompletionDoc *d) {
        free(d->job);
        free(d->completed_at);
        writer_done(&d->writer);
        d->tasks = job_completion_free(d->tasks);
}

static int read_completion_member(JsonReader *j, size_t k, const char *kl, CompletionDoc *d) {
        switch (k) {
        case CK_JOB:
                return json_read_string_value(j, kl, &d->job);
        case CK_COMPLETED_AT:
                return json_read_string_value(j, kl, &d->completed_at);
        case CK_WRITER:
                return read_writer(j, kl, 1, &d->writer);
        case CK_TASKS:
                return read_completion_tasks(j, d->tasks);
        case CK_EXT:
                return json_read_ext(j, kl, 1);
        default:
                return json_skip_value(j, 1);
        }
}

static int job_completion_parse_internal(const char *data, size_t len, JobCompletion **ret, char **error) {
        static const DocumentType type = { "marker", COMPLETION_FORMAT, COMPLETION_VERSION,
                                           COMPLETION_SIZE_MAX };
        _cleanup_(completion_doc_done) CompletionDoc d = {};
        _cleanup_(job_completion_freep) JobCompletion *c = NULL;
        JsonReader j = { .begin = data, .p = data, .end = data + len, .error = error };
        char kl[JSON_LABEL_MAX], q[CONFIG_QUOTE_MAX];
        JobCompletionParams p;
        bool first = true;
        uint32_t seen = 0;
        size_t k;
        int r;

        r = document_check(data, len, &type, error);
        if (r < 0)
                return r;
        d.tasks = calloc(1, sizeof(JobCompletion));
        if (!d.tasks)
                return -ENOMEM;
        r = json_object_begin(&j, "marker");
        for (; r >= 0;) {
                r = json_read_member(&j, "", completion_keys, ELEMENTSOF(completion_keys), &first, &seen, &k, kl);
                if (r <= 0)
                        break;
                r = read_completion_member(&j, k, kl, &d);
        }
        if (r < 0)
                return r;
        r = json_check_required(&j, "", completion_keys, ELEMENTSOF(completion_keys), EK(CK_EXT) - 1, seen);
        if (r < 0)
                return r;
        p = (JobCompletionParams) { .job = d.job, .instance_id = d.writer.instance_id,
                                    .boot_id = d.writer.boot_id, .hostname = d.writer.hostname };
        if (parse_rfc3339_msec(d.completed_at, &p.completed_at) < 0)
                return first_problem(error, -EBADMSG, "completed_at: %s is not an RFC 3339 UTC time with milliseconds "
                               "(\"2026-11-23T16:00:00.123Z\")", config_quote(d.completed_at, q));
        r = job_completion_new_internal(&p, &c, error);
        if (r < 0)
                return bad_message(r);
        c->tasks = TAKE_PTR(d.tasks->tasks);
        c->n_tasks = d.tasks->n_tasks;
        d.tasks->n_tasks = 0;
        *ret = TAKE_PTR(c);
        return 0;
}

int job_completion_parse(const char *data, size_t len, JobCompletion **ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;

        assert(ret);
        return finish(job_completion_parse_internal(data, len, ret, &error), &error, ret_error);
}
