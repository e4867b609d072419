/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include <dirent.h>
#include <inttypes.h>

#include "manifest.h"
#include "strv.h"

/* The snapshot of tests/fixtures/manifest/make-fixtures.py ("base"). */
#define INSTANCE "i-0123456789abcdef0"
#define BOOT "0b6c0f0ee6b34c7a9d2f7d7b1a8c9e01"
#define HOST "ip-10-0-0-1.ec2.internal"
#define WRITER "b1c51fac" /* sha256("i-0123456789abcdef0\n0b6c0f0ee6b34c7a9d2f7d7b1a8c9e01")[:8] */
#define ID "000000000012-20261123T160000123Z-" WRITER
#define PARENT "000000000011-20261123T155000000Z-" WRITER
#define TIME_USEC UINT64_C(1795449600123000) /* 2026-11-23T16:00:00.123Z */
#define MTIME UINT64_C(1763913600123456789)
#define SHA_MODEL "78af4dc485eb32a809e795bfca78a4f5313401b58d9bc81cc4d1b89445b97333"
#define SHA_OPTIM "99302d19da2e3de2b56643cabb4205a0c70e7a7531ece02d5b9c85275993aecc"
#define SHA_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_P0 "e46f92236739147cf70e66ce916967fdaad76faf563a9db97c08370a24a1e574"
#define SHA_P1 "eabb22d6a1678770f13c9fffd41ecfc88730ae880249a1f72fb3f8d259724516"
#define SHA_P2 "888b19a43b151683c87895f6211d9f8640f97bdc8ef32f03dbe057c8f5e56d32"

static const ManifestParams base_params = {
        .id = ID, .job = "demo-job", .task = "main", .parent = PARENT,
        .instance_id = INSTANCE, .boot_id = BOOT, .hostname = HOST,
};

static const ManifestPart optim_parts[] = {
        { 8, SHA_P0 }, { 8, SHA_P1 }, { 4, SHA_P2 },
};

static Manifest *base_new(void) {
        Manifest *m = NULL;
        char *e = NULL;

        assert_int_equal(manifest_new(&base_params, &m, &e), 0);
        assert_null(e);
        return m;
}

/* Adds the base entries, in document order or reversed. */
static void base_add(Manifest *m, bool reversed) {
        for (size_t k = 0; k < 7; k++) {
                size_t i = reversed ? 6 - k : k;
                int r = 0;

                switch (i) {
                case 0: r = manifest_add_dir(m, "ckpt", 0755, NULL); break;
                case 1: r = manifest_add_symlink(m, "ckpt/latest-model", "model.pt", NULL); break;
                case 2:
                        r = manifest_add_file(m, "ckpt/model.pt", &(ManifestFile) {
                                .size = 10, .mode = 0644, .mtime_ns = MTIME, .sha256 = SHA_MODEL }, NULL);
                        break;
                case 3:
                        r = manifest_add_file(m, "ckpt/optim.pt", &(ManifestFile) {
                                .size = 20, .mode = 0600, .mtime_ns = MTIME, .sha256 = SHA_OPTIM,
                                .part_size = 8, .parts = optim_parts, .n_parts = 3 }, NULL);
                        break;
                case 4: r = manifest_add_symlink(m, "latest", "ckpt", NULL); break;
                case 5: r = manifest_add_dir(m, "logs", 0700, NULL); break;
                case 6:
                        r = manifest_add_file(m, "logs/empty", &(ManifestFile) {
                                .mode = 0644, .mtime_ns = MTIME, .sha256 = SHA_EMPTY }, NULL);
                        break;
                }
                assert_int_equal(r, 0);
        }
}

static char *to_json(Manifest *m, size_t *ret_len) {
        char *j = NULL, *e = NULL;

        assert_int_equal(manifest_to_json(m, &j, ret_len, &e), 0);
        assert_null(e);
        return j;
}

static void assert_fixture_equal(const char *name, const char *json, size_t len) {
        size_t n;
        char *f = fixture_read("manifest", name, &n, false);

        if (n != len || memcmp(f, json, n) != 0)
                fail_msg("%s differs from the serializer's output:\n%s", name, json);
        free(f);
}

/* ---- the serializer */

static void test_golden(void **state) {
        _cleanup_(manifest_freep) Manifest *m = base_new();
        _cleanup_free_ char *j = NULL;
        size_t len;

        base_add(m, false);
        j = to_json(m, &len);
        assert_int_equal(strlen(j), len);
        assert_fixture_equal("valid-basic.json", j, len);
        assert_int_equal(m->bytes, 30);
        assert_int_equal(m->n_entries, 7);
}

static void test_deterministic(void **state) {
        _cleanup_(manifest_freep) Manifest *a = base_new(), *b = base_new(), *p = NULL;
        _cleanup_free_ char *ja = NULL, *jb = NULL, *jp = NULL, *data = NULL;
        size_t la, lb, lp, n;

        base_add(a, false);
        base_add(b, true);
        ja = to_json(a, &la);
        jb = to_json(b, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(ja, jb, la);

        /* Keys in another order, entries unsorted, tabs, \u escapes, "ext" everywhere: the same snapshot,
         * so the same bytes once written again. */
        data = fixture_read("manifest", "valid-reordered.json", &n, false);
        assert_int_equal(manifest_parse(data, n, &p, NULL), 0);
        jp = to_json(p, &lp);
        assert_int_equal(lp, la);
        assert_memory_equal(jp, ja, la);
}

static void assert_entries_equal(const ManifestEntry *x, const ManifestEntry *y) {
        assert_string_equal(x->path, y->path);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->mode, y->mode);
        assert_int_equal(x->size, y->size);
        assert_int_equal(x->mtime_ns, y->mtime_ns);
        assert_string_equal(x->sha256, y->sha256);
        assert_int_equal(x->part_size, y->part_size);
        assert_int_equal(x->n_parts, y->n_parts);
        for (size_t k = 0; k < x->n_parts; k++) {
                assert_int_equal(x->parts[k].size, y->parts[k].size);
                assert_string_equal(x->parts[k].sha256, y->parts[k].sha256);
        }
        if (x->target || y->target)
                assert_string_equal(x->target, y->target);
}

static void test_round_trip(void **state) {
        _cleanup_(manifest_freep) Manifest *m = base_new(), *p = NULL;
        _cleanup_free_ char *j = NULL, *j2 = NULL;
        size_t len, len2;
        char *e = NULL;

        base_add(m, true);
        j = to_json(m, &len);
        assert_int_equal(manifest_parse(j, len, &p, &e), 0);
        assert_null(e);

        assert_string_equal(p->id, ID);
        assert_int_equal(p->seq, 12);
        assert_int_equal(p->created_at, TIME_USEC);
        assert_string_equal(p->job, "demo-job");
        assert_string_equal(p->task, "main");
        assert_string_equal(p->parent, PARENT);
        assert_string_equal(p->writer.instance_id, INSTANCE);
        assert_string_equal(p->writer.boot_id, BOOT);
        assert_string_equal(p->writer.hostname, HOST);
        assert_int_equal(p->bytes, m->bytes);
        assert_int_equal(p->n_entries, m->n_entries);
        for (size_t i = 0; i < p->n_entries; i++) {
                assert_entries_equal(&p->entries[i], &m->entries[i]);
                assert_int_equal(p->entries[i].index, i); /* the document's order, which is sorted */
        }
        j2 = to_json(p, &len2);
        assert_int_equal(len2, len);
        assert_memory_equal(j, j2, len);
        /* mtime_ns beyond 2^53 survives exactly */
        assert_int_equal(manifest_find(p, "ckpt/model.pt")->mtime_ns, MTIME);
}

/* Fixtures written by the Python writer read back to the same bytes. */
static void test_valid_fixtures(void **state) {
        static const char *names[] = { "valid-basic.json", "valid-empty.json", "valid-unicode.json" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_(manifest_freep) Manifest *m = NULL;
                _cleanup_free_ char *data = NULL, *j = NULL, *e = NULL;
                size_t n, len;

                data = fixture_read("manifest", names[i], &n, false);
                if (manifest_parse(data, n, &m, &e) < 0)
                        fail_msg("%s: %s", names[i], e);
                j = to_json(m, &len);
                assert_fixture_equal(names[i], j, len);
        }
}

/* ---- the parser against hostile documents: one broken rule each, one exact message each */

typedef struct Hostile {
        const char *name;
        int r;
        const char *message;
} Hostile;

static const Hostile hostile[] = {
        /* paths */
        { "bad-path-traversal.json", -EBADMSG, "files[7].path: \"..\" component" },
        { "bad-path-absolute.json", -EBADMSG, "files[7].path: absolute path" },
        { "bad-path-inner-dotdot.json", -EBADMSG, "files[7].path: \"..\" component" },
        { "bad-path-dot.json", -EBADMSG, "files[7].path: \".\" component" },
        { "bad-path-empty-component.json", -EBADMSG, "files[7].path: empty component" },
        { "bad-path-trailing-slash.json", -EBADMSG, "files[7].path: empty component" },
        { "bad-path-empty.json", -EBADMSG, "files[7].path: must not be empty" },
        { "bad-path-backslash.json", -EBADMSG, "files[7].path: backslash" },
        { "bad-path-control.json", -EBADMSG, "files[7].path: control character" },
        { "bad-path-long-component.json", -EBADMSG, "files[7].path: component longer than 255 bytes" },
        { "bad-path-too-long.json", -EBADMSG, "files[7].path: longer than 4096 bytes" },
        { "bad-path-duplicate.json", -EBADMSG, "files[7].path: duplicate of files[2]" },
        { "bad-path-parent-missing.json", -EBADMSG, "files[7].path: parent \"nodir\" is not in the manifest" },
        { "bad-path-under-file.json", -EBADMSG, "files[7].path: parent \"ckpt/model.pt\" is a file (files[2])" },
        { "bad-path-under-symlink.json", -EBADMSG, "files[7].path: parent \"latest\" is a symlink (files[4])" },
        /* bytes no JSON writer emits */
        { "bad-utf8-invalid.json", -EBADMSG, "20:20: syntax error: invalid UTF-8" },
        { "bad-utf8-overlong-slash.json", -EBADMSG, "20:22: syntax error: invalid UTF-8" },
        { "bad-utf8-surrogate.json", -EBADMSG, "20:20: syntax error: invalid UTF-8" },
        { "bad-nul-byte.json", -EBADMSG, "20:20: syntax error: NUL byte" },
        { "bad-nul-escape.json", -EBADMSG, "20:25: syntax error: \\u0000 escape (NUL character)" },
        { "bad-lone-surrogate.json", -EBADMSG, "20:20: syntax error: unpaired surrogate in a \\u escape" },
        { "bad-raw-control.json", -EBADMSG, "20:20: syntax error: control character in a string" },
        /* symlinks */
        { "bad-symlink-escape.json", -EBADMSG, "files[7].target: leaves the snapshot" },
        { "bad-symlink-escape-nested.json", -EBADMSG, "files[7].target: leaves the snapshot" },
        { "bad-symlink-absolute.json", -EBADMSG, "files[7].target: absolute target" },
        { "bad-symlink-chain.json", -EBADMSG, "files[7].target: points to symlink \"latest\" (files[4])" },
        { "bad-symlink-through.json", -EBADMSG, "files[7].target: passes through symlink \"latest\" (files[4])" },
        { "bad-symlink-through-dotdot.json", -EBADMSG,
          "files[7].target: passes through symlink \"latest\" (files[4])" },
        { "bad-symlink-self.json", -EBADMSG, "files[7].target: points to symlink \"a\" (files[7])" },
        { "bad-symlink-empty.json", -EBADMSG, "files[7].target: must not be empty" },
        /* sizes that lie */
        { "bad-bytes-mismatch.json", -EBADMSG, "bytes: 31 does not match the sum of the files' sizes (30)" },
        { "bad-count-mismatch.json", -EBADMSG, "count: 8 does not match the number of entries (7)" },
        { "bad-count-huge.json", -EBADMSG, "count: must be between 0 and 1000000" },
        { "bad-size-negative.json", -EBADMSG, "files[2].size: must be between 0 and 1125899906842624" },
        { "bad-size-huge.json", -EBADMSG, "files[2].size: must be between 0 and 1125899906842624" },
        { "bad-size-fraction.json", -EBADMSG, "files[2].size: must be an integer" },
        { "bad-parts-sum.json", -EBADMSG, "files[3].parts: sizes sum to 19, not the file's size 20" },
        { "bad-parts-middle-short.json", -EBADMSG,
          "files[3].parts[1].size: must be part_size (8), only the last part may be shorter" },
        { "bad-parts-last-long.json", -EBADMSG, "files[3].parts[1].size: must be between 1 and part_size (8)" },
        { "bad-parts-no-part-size.json", -EBADMSG, "files[3].part_size: required with parts" },
        { "bad-parts-no-parts.json", -EBADMSG, "files[3].parts: required with part_size" },
        { "bad-parts-empty.json", -EBADMSG, "files[3].parts: must not be empty" },
        { "bad-parts-bad-sha.json", -EBADMSG, "files[3].parts[1].sha256: must be 64 lowercase hex digits" },
        { "bad-same-sha-other-size.json", -EBADMSG,
          "files[7].size: 11 differs from files[2] (10), which has the same sha256" },
        /* checksums, object keys, modes, times */
        { "bad-sha-uppercase.json", -EBADMSG, "files[2].sha256: must be 64 lowercase hex digits" },
        { "bad-sha-short.json", -EBADMSG, "files[2].sha256: must be 64 lowercase hex digits" },
        { "bad-object-elsewhere.json", -EBADMSG,
          "files[2].object: must be \"data/<sha256>\" with the entry's sha256, not \"data/../manifests/x\"" },
        { "bad-object-other-sha.json", -EBADMSG,
          "files[2].object: must be \"data/<sha256>\" with the entry's sha256, not "
          "\"data/99302d19da2e3de2b56643cabb4205a0c70e7a7531ece02d5b9c8527599...\"" },
        { "bad-mode-setuid.json", -EBADMSG, "files[2].mode: must be between 0 and 511" },
        { "bad-mtime-number.json", -EBADMSG, "files[2].mtime_ns: must be a string" },
        { "bad-mtime-negative.json", -EBADMSG,
          "files[2].mtime_ns: must be a decimal integer in a string, like \"1763913600123456789\"" },
        { "bad-mtime-leading-zero.json", -EBADMSG,
          "files[2].mtime_ns: must be a decimal integer in a string, like \"1763913600123456789\"" },
        { "bad-mtime-overflow.json", -EBADMSG, "files[2].mtime_ns: must be at most 9223372036854775807" },
        /* keys */
        { "bad-key-unknown.json", -EBADMSG, "colour: unknown key" },
        { "bad-key-unknown-entry.json", -EBADMSG, "files[1].owner: unknown key" },
        { "bad-key-unknown-weird.json", -EBADMSG, "files[1][\"we\\\"ird\"]: unknown key" },
        { "bad-key-unknown-writer.json", -EBADMSG, "writer.zone: unknown key" },
        { "bad-key-unknown-part.json", -EBADMSG, "files[3].parts[0].md5: unknown key" },
        { "bad-key-missing-sha.json", -EBADMSG, "files[2].sha256: required" },
        { "bad-key-missing-writer.json", -EBADMSG, "writer: required" },
        { "bad-key-missing-hostname.json", -EBADMSG, "writer.hostname: required" },
        { "bad-key-missing-path.json", -EBADMSG, "files[0].path: required" },
        { "bad-key-not-allowed.json", -EBADMSG, "files[0].size: not allowed for type \"dir\"" },
        { "bad-key-not-allowed-symlink.json", -EBADMSG, "files[1].mode: not allowed for type \"symlink\"" },
        { "bad-key-type-unknown.json", -EBADMSG, "files[0].type: unknown type \"fifo\"" },
        { "bad-key-duplicate.json", -EBADMSG, "files[0].path: duplicate key" },
        { "bad-key-duplicate-top.json", -EBADMSG, "seq: duplicate key" },
        { "bad-ext-array.json", -EBADMSG, "ext: must be an object" },
        /* wrong types everywhere */
        { "bad-type-id.json", -EBADMSG, "id: must be a string" },
        { "bad-type-seq.json", -EBADMSG, "seq: must be an integer" },
        { "bad-type-job.json", -EBADMSG, "job: must be a string" },
        { "bad-type-task.json", -EBADMSG, "task: must be a string" },
        { "bad-type-created-at.json", -EBADMSG, "created_at: must be a string" },
        { "bad-type-writer.json", -EBADMSG, "writer: must be an object" },
        { "bad-type-hostname.json", -EBADMSG, "writer.hostname: must be a string" },
        { "bad-type-parent.json", -EBADMSG, "parent: must be a string or null" },
        { "bad-type-bytes.json", -EBADMSG, "bytes: must be an integer" },
        { "bad-type-count.json", -EBADMSG, "count: must be an integer" },
        { "bad-type-files.json", -EBADMSG, "files: must be an array" },
        { "bad-type-entry.json", -EBADMSG, "files[0]: must be an object" },
        { "bad-type-path.json", -EBADMSG, "files[0].path: must be a string" },
        { "bad-type-type.json", -EBADMSG, "files[0].type: must be a string" },
        { "bad-type-size.json", -EBADMSG, "files[2].size: must be an integer" },
        { "bad-type-mode.json", -EBADMSG, "files[0].mode: must be an integer" },
        { "bad-type-sha256.json", -EBADMSG, "files[2].sha256: must be a string" },
        { "bad-type-object.json", -EBADMSG, "files[2].object: must be a string" },
        { "bad-type-part-size.json", -EBADMSG, "files[3].part_size: must be an integer" },
        { "bad-type-parts.json", -EBADMSG, "files[3].parts: must be an array" },
        { "bad-type-part.json", -EBADMSG, "files[3].parts[0]: must be an object" },
        { "bad-type-part-size-value.json", -EBADMSG, "files[3].parts[0].size: must be an integer" },
        { "bad-type-target.json", -EBADMSG, "files[1].target: must be a string" },
        /* the header */
        { "bad-format.json", -EBADMSG,
          "format: unknown format \"trainsupd-snapshot2\" (expected \"trainsupd-snapshot\")" },
        { "bad-format-missing.json", -EBADMSG, "format: required" },
        { "bad-version-newer.json", -EPROTONOSUPPORT, "version: written by a newer trainsupd (version 2)" },
        { "bad-version-newer-schema.json", -EPROTONOSUPPORT,
          "version: written by a newer trainsupd (version 3)" },
        { "bad-version-zero.json", -EBADMSG, "version: unknown version 0" },
        { "bad-version-string.json", -EBADMSG, "version: must be an integer" },
        { "bad-version-missing.json", -EBADMSG, "version: required" },
        { "bad-id.json", -EBADMSG, "id: invalid snapshot id \"12-20261123T160000123Z-" WRITER "\"" },
        { "bad-id-uppercase.json", -EBADMSG,
          "id: invalid snapshot id \"000000000012-20261123T160000123Z-B1C51FAC\"" },
        { "bad-seq-mismatch.json", -EBADMSG, "seq: 13 does not match the id (seq 12)" },
        { "bad-seq-zero.json", -EBADMSG, "seq: must be between 1 and 999999999999" },
        { "bad-writer-mismatch.json", -EBADMSG,
          "id: writer \"" WRITER "\" does not match writer.instance_id and writer.boot_id (\"66ec4299\")" },
        { "bad-writer-space.json", -EBADMSG,
          "writer.hostname: must be 1 to 255 printable ASCII characters without spaces" },
        { "bad-created-at-mismatch.json", -EBADMSG,
          "created_at: 2026-11-23T16:00:00.124Z does not match the time in the id" },
        { "bad-created-at-format.json", -EBADMSG,
          "created_at: \"2026-11-23T16:00:00Z\" is not an RFC 3339 UTC time with milliseconds "
          "(\"2026-11-23T16:00:00.123Z\")" },
        { "bad-job.json", -EBADMSG, "job: invalid job id \"../other-job\"" },
        { "bad-task.json", -EBADMSG, "task: invalid task name \"Main\"" },
        { "bad-parent-newer.json", -EBADMSG,
          "parent: \"000000000013-20261123T150000000Z-" WRITER "\" is not older than the snapshot" },
        { "bad-parent-invalid.json", -EBADMSG, "parent: invalid snapshot id \"latest\"" },
        /* not a manifest at all */
        { "bad-syntax-trailing-comma.json", -EBADMSG, "22:1: syntax error: expected a member name (a string)" },
        { "bad-syntax-truncated.json", -EBADMSG, "8:44: syntax error: unexpected end of data" },
        { "bad-syntax-truncated-string.json", -EBADMSG, "8:34: syntax error: unterminated string" },
        { "bad-syntax-garbage-after.json", -EBADMSG, "23:1: syntax error: expected the end of the data" },
        { "bad-syntax-bom.json", -EBADMSG, "1:1: syntax error: expected a value" },
        { "bad-syntax-leading-zero.json", -EBADMSG, "5:10: syntax error: leading zero in a number" },
        { "bad-not-object.json", -EBADMSG, "manifest: must be a JSON object" },
        { "bad-empty.json", -EBADMSG, "manifest: empty" },
        { "bad-nesting-ext.json", -EBADMSG, "11:41: syntax error: nested deeper than 32 levels" },
        { "bad-nesting-top.json", -EBADMSG, "1:33: syntax error: nested deeper than 32 levels" },
};

/* Reports every mismatch, then fails. */
static void test_hostile(void **state) {
        unsigned failed = 0;

        for (size_t i = 0; i < ELEMENTSOF(hostile); i++) {
                _cleanup_(manifest_freep) Manifest *m = NULL;
                _cleanup_free_ char *data = NULL, *e = NULL;
                size_t n;
                int r;

                data = fixture_read("manifest", hostile[i].name, &n, false);
                r = manifest_parse(data, n, &m, &e);
                if (r != hostile[i].r || !e || !streq(e, hostile[i].message)) {
                        print_error("%s: got %d \"%s\", expected %d \"%s\"\n", hostile[i].name, r, strna(e),
                                    hostile[i].r, hostile[i].message);
                        failed++;
                }
                assert_null(m);
        }
        assert_int_equal(failed, 0);
}

/* ---- limits that would need fixtures of tens of megabytes: built in memory */

static char *doc_with_files(const char *files, size_t n_entries, size_t *ret_len) {
        char *d = NULL;
        int k;

        k = asprintf(&d,
                     "{\"format\":\"trainsupd-snapshot\",\"version\":1,\"id\":\"%s\",\"seq\":12,\"job\":\"j\","
                     "\"task\":\"main\",\"created_at\":\"2026-11-23T16:00:00.123Z\",\"writer\":{\"instance_id\":\""
                     INSTANCE "\",\"boot_id\":\"" BOOT "\",\"hostname\":\"h\"},\"parent\":null,\"bytes\":0,"
                     "\"files\":[%s],\"count\":%zu}",
                     ID, files, n_entries);
        assert_true(k > 0);
        *ret_len = (size_t) k;
        return d;
}

static void test_limit_entries(void **state) {
        static const char entry[] = "{\"path\":\"d\",\"type\":\"dir\",\"mode\":0},";
        size_t n = MANIFEST_ENTRIES_MAX + 1, el = strlen(entry), len;
        _cleanup_free_ char *files = malloc(n * el), *d = NULL, *e = NULL;
        Manifest *m = NULL;

        assert_non_null(files);
        for (size_t i = 0; i < n; i++)
                memcpy(files + i * el, entry, el);
        files[n * el - 1] = '\0'; /* the last ',' */
        d = doc_with_files(files, n, &len);
        assert_true(len < MANIFEST_SIZE_MAX);
        assert_int_equal(manifest_parse(d, len, &m, &e), -EBADMSG);
        assert_string_equal(e, "files: more than 1000000 entries");
        assert_null(m);
}

static void test_limit_parts(void **state) {
        _cleanup_free_ char *files = NULL, *d = NULL, *e = NULL;
        _cleanup_free_ ManifestPart *parts = NULL;
        _cleanup_(manifest_freep) Manifest *b = base_new();
        size_t n = MANIFEST_PARTS_MAX + 1, len, off;
        char *e2 = NULL;
        Manifest *m = NULL;
        FILE *f;

        f = open_memstream(&files, &len);
        assert_non_null(f);
        fprintf(f, "{\"path\":\"f\",\"type\":\"file\",\"size\":%zu,\"mode\":420,\"mtime_ns\":\"0\",\"sha256\":\"%s\","
                "\"object\":\"data/%s\",\"part_size\":1,\"parts\":[", n, SHA_EMPTY, SHA_EMPTY);
        for (size_t i = 0; i < n; i++)
                fprintf(f, "%s{\"size\":1,\"sha256\":\"%s\"}", i > 0 ? "," : "", SHA_EMPTY);
        fputs("]}", f);
        assert_int_equal(fclose(f), 0);
        d = doc_with_files(files, 1, &len);
        assert_int_equal(manifest_parse(d, len, &m, &e), -EBADMSG);
        assert_string_equal(e, "files[0].parts: more than 10000 parts");

        /* The builder: the same limit, and exactly 10000 parts are fine. */
        parts = calloc(n, sizeof(ManifestPart));
        assert_non_null(parts);
        for (size_t i = 0; i < n; i++)
                parts[i] = (ManifestPart) { .size = 1, .sha256 = SHA_EMPTY };
        assert_int_equal(manifest_add_dir(b, "d", 0755, NULL), 0);
        off = 0;
        assert_int_equal(manifest_add_file(b, "d/f", &(ManifestFile) { .size = n, .sha256 = SHA_EMPTY, .part_size = 1,
                                                                       .parts = parts, .n_parts = n }, &e2),
                         -EINVAL);
        assert_string_equal(e2, "files[1].parts: more than 10000 parts");
        free(e2);
        assert_int_equal(manifest_add_file(b, "d/f", &(ManifestFile) { .size = n - 1, .sha256 = SHA_EMPTY,
                                                                       .part_size = 1, .parts = parts + off,
                                                                       .n_parts = n - 1 }, NULL),
                         0);
}

static void test_limit_size(void **state) {
        size_t n = MANIFEST_SIZE_MAX + 1;
        _cleanup_free_ char *d = malloc(n), *e = NULL;
        Manifest *m = NULL;

        assert_non_null(d);
        memset(d, ' ', n); /* white space only: parsing it would say "empty" or "end of data" */
        assert_int_equal(manifest_parse(d, n, &m, &e), -EBADMSG);
        assert_string_equal(e, "manifest: larger than 67108864 bytes");
}

/* "ext" may hold any JSON, nested up to the document's limit of 32 levels. */
static void test_nesting(void **state) {
        for (unsigned depth = 29; depth <= 32; depth++) {
                _cleanup_free_ char *d = NULL, *e = NULL, *open = NULL, *close = NULL;
                _cleanup_(manifest_freep) Manifest *m = NULL;
                unsigned arrays = depth - 2; /* the document, then "ext" itself */
                int k;

                open = malloc(arrays + 1);
                close = malloc(arrays + 1);
                assert_true(open && close);
                memset(open, '[', arrays);
                memset(close, ']', arrays);
                open[arrays] = close[arrays] = '\0';
                k = asprintf(&d,
                             "{\"format\":\"trainsupd-snapshot\",\"version\":1,\"id\":\"" ID "\",\"seq\":12,"
                             "\"job\":\"j\",\"task\":\"main\",\"created_at\":\"2026-11-23T16:00:00.123Z\","
                             "\"writer\":{\"instance_id\":\"" INSTANCE "\",\"boot_id\":\"" BOOT "\",\"hostname\":\"h\"},"
                             "\"parent\":null,\"bytes\":0,\"count\":0,\"files\":[],\"ext\":{\"x\":%s%s}}",
                             open, close);
                assert_true(k > 0);
                if (depth <= MANIFEST_NESTING_MAX)
                        assert_int_equal(manifest_parse(d, (size_t) k, &m, &e), 0);
                else {
                        assert_int_equal(manifest_parse(d, (size_t) k, &m, &e), -EBADMSG);
                        assert_string_equal(e, "1:283: syntax error: nested deeper than 32 levels");
                }
        }
}

/* ---- the builder refuses what the parser refuses, with the same words */

/* Checks and frees *e. */
static void expect_error(int r, char **e, int expected_r, const char *expected) {
        if (r != expected_r || !*e || !streq(*e, expected))
                fail_msg("got %d \"%s\", expected %d \"%s\"", r, strna(*e), expected_r, expected);
        *e = mfree(*e);
}

static void test_builder_entries(void **state) {
        _cleanup_(manifest_freep) Manifest *m = base_new();
        ManifestFile good = { .size = 10, .mode = 0644, .mtime_ns = MTIME, .sha256 = SHA_MODEL }, f;
        ManifestPart parts[3] = { { 8, SHA_P0 }, { 8, SHA_P1 }, { 4, SHA_P2 } };
        char *e = NULL;
        int r;

        assert_int_equal(manifest_add_dir(m, "d", 0755, NULL), 0);
        r = manifest_add_dir(m, "../../etc/passwd", 0755, &e);
        expect_error(r, &e, -EINVAL, "files[1].path: \"..\" component");
        r = manifest_add_file(m, "/etc/shadow", &good, &e);
        expect_error(r, &e, -EINVAL, "files[1].path: absolute path");
        r = manifest_add_file(m, "d/\xc0\xaf", &good, &e);
        expect_error(r, &e, -EINVAL, "files[1].path: not valid UTF-8");
        r = manifest_add_dir(m, "d/x", 01777, &e);
        expect_error(r, &e, -EINVAL, "files[1].mode: must be between 0 and 511");
        f = good, f.size = MANIFEST_FILE_SIZE_MAX + 1;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].size: must be between 0 and 1125899906842624");
        f = good, f.sha256 = "ABC";
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].sha256: must be 64 lowercase hex digits");
        f = good, f.sha256 = NULL;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].sha256: must be 64 lowercase hex digits");
        f = good, f.mtime_ns = UINT64_MAX;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].mtime_ns: must be at most 9223372036854775807");
        f = good, f.size = 20, f.part_size = 8, f.parts = parts, f.n_parts = 3;
        parts[2].size = 9;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].parts[2].size: must be between 1 and part_size (8)");
        parts[2].size = 3;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].parts: sizes sum to 19, not the file's size 20");
        f.part_size = 0;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].part_size: required with parts");
        f = good, f.part_size = 8;
        r = manifest_add_file(m, "d/f", &f, &e);
        expect_error(r, &e, -EINVAL, "files[1].parts: required with part_size");
        r = manifest_add_symlink(m, "d/l", "../..", &e);
        expect_error(r, &e, -EINVAL, "files[1].target: leaves the snapshot");
        r = manifest_add_symlink(m, "d/l", "/etc", &e);
        expect_error(r, &e, -EINVAL, "files[1].target: absolute target");
        r = manifest_add_symlink(m, "d/l", "a\\..\\..", &e);
        expect_error(r, &e, -EINVAL, "files[1].target: backslash");
        /* nothing refused was added; a NULL ret_error is fine */
        assert_int_equal(m->n_entries, 1);
        assert_int_equal(manifest_add_dir(m, "a/../b", 0755, NULL), -EINVAL);
        assert_int_equal(manifest_add_symlink(m, "d/l", "..", NULL), 0);
        assert_int_equal(manifest_add_symlink(m, "d/m", "../d/./x//y", NULL), 0);
}

static void test_builder_whole(void **state) {
        static const struct {
                const char *paths[3];   /* dirs, unless "name -> target" (symlink) or "name=" (file) */
                const char *message;
        } cases[] = {
                { { "d", "d", NULL }, "files[1].path: duplicate of files[0]" },
                { { "d/x", NULL, NULL }, "files[0].path: parent \"d\" is not in the manifest" },
                { { "f=", "f/x", NULL }, "files[1].path: parent \"f\" is a file (files[0])" },
                { { "l -> d", "l/c=", "d" }, "files[1].path: parent \"l\" is a symlink (files[0])" },
                { { "a -> b", "b -> c", NULL }, "files[0].target: points to symlink \"b\" (files[1])" },
                { { "a -> b/./", "b -> d", "d" }, "files[0].target: points to symlink \"b\" (files[1])" },
                { { "a -> b/..", "b -> d", "d" }, "files[0].target: passes through symlink \"b\" (files[1])" },
                { { "d", "d/a -> ../l/x", "l -> d" },
                  "files[1].target: passes through symlink \"l\" (files[2])" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(manifest_freep) Manifest *m = base_new();
                _cleanup_free_ char *j = NULL;
                char *e = NULL;
                int r;

                for (size_t k = 0; k < 3 && cases[i].paths[k]; k++) {
                        _cleanup_free_ char *p = strdup(cases[i].paths[k]);
                        char *arrow = strstr(p, " -> "), *eq = strchr(p, '=');

                        if (arrow) {
                                *arrow = '\0';
                                assert_int_equal(manifest_add_symlink(m, p, arrow + 4, NULL), 0);
                        } else if (eq) {
                                *eq = '\0';
                                r = manifest_add_file(m, p, &(ManifestFile) { .sha256 = SHA_EMPTY }, NULL);
                                assert_int_equal(r, 0);
                        } else
                                assert_int_equal(manifest_add_dir(m, p, 0755, NULL), 0);
                }
                r = manifest_to_json(m, &j, NULL, &e);
                expect_error(r, &e, -EINVAL, cases[i].message);
                assert_null(j);
                r = manifest_validate(m, &e);
                expect_error(r, &e, -EINVAL, cases[i].message);
        }
}

static void test_builder_header(void **state) {
        ManifestParams p;
        Manifest *m = NULL;
        char *e = NULL;
        int r;

        p = base_params, p.id = "nope";
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL, "id: invalid snapshot id \"nope\"");
        p = base_params, p.job = NULL;
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL, "job: required");
        p = base_params, p.task = "a/b";
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL, "task: invalid task name \"a/b\"");
        p = base_params, p.hostname = "";
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL,
                     "writer.hostname: must be 1 to 255 printable ASCII characters without spaces");
        p = base_params, p.instance_id = "i-other";
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL,
                     "id: writer \"" WRITER "\" does not match writer.instance_id and writer.boot_id (\"61311cae\")");
        p = base_params, p.parent = ID;
        r = manifest_new(&p, &m, &e);
        expect_error(r, &e, -EINVAL, "parent: \"" ID "\" is not older than the snapshot");
        assert_null(m);
        p = base_params, p.parent = NULL;
        assert_int_equal(manifest_new(&p, &m, NULL), 0);
        assert_null(m->parent);
        m = manifest_free(m);
}

/* ---- helpers for restore and retention */

static void test_find_and_objects(void **state) {
        _cleanup_(manifest_freep) Manifest *m = base_new();
        _cleanup_strv_free_ char **keys = NULL;
        char buf[MANIFEST_OBJECT_KEY_MAX];
        const ManifestEntry *e;
        ManifestFile f;

        base_add(m, true);
        /* unsorted: a linear search */
        assert_false(m->sorted);
        e = manifest_find(m, "ckpt/optim.pt");
        assert_non_null(e);
        assert_int_equal(e->n_parts, 3);
        assert_int_equal(manifest_validate(m, NULL), 0);
        assert_true(m->sorted);
        assert_string_equal(manifest_find(m, "latest")->target, "ckpt");
        assert_int_equal(manifest_find(m, "logs")->type, MANIFEST_ENTRY_DIR);
        assert_null(manifest_find(m, "ckpt/"));
        assert_null(manifest_find(m, "nope"));
        assert_string_equal(manifest_entry_object_key(manifest_find(m, "ckpt/model.pt"), buf), "data/" SHA_MODEL);

        /* the same content twice is one object */
        f = (ManifestFile) { .size = 10, .sha256 = SHA_MODEL };
        assert_int_equal(manifest_add_file(m, "logs/copy", &f, NULL), 0);
        assert_int_equal(manifest_object_keys(m, &keys), 0);
        assert_int_equal(strv_length(keys), 3);
        /* sorted by key */
        assert_string_equal(keys[0], "data/" SHA_MODEL);
        assert_string_equal(keys[1], "data/" SHA_OPTIM);
        assert_string_equal(keys[2], "data/" SHA_EMPTY);
}

static void test_object_keys_empty(void **state) {
        _cleanup_(manifest_freep) Manifest *m = base_new();
        _cleanup_strv_free_ char **keys = NULL;

        assert_int_equal(manifest_object_keys(m, &keys), 0);
        assert_non_null(keys);
        assert_null(keys[0]);
}

/* ---- ids */

static void test_id_format_parse(void **state) {
        char id[SNAPSHOT_ID_MAX];
        SnapshotId s;

        /* cut to the millisecond */
        assert_int_equal(snapshot_id_format(12, TIME_USEC + 999, WRITER, id), 0);
        assert_string_equal(id, ID);
        assert_int_equal(strlen(id), SNAPSHOT_ID_LEN);
        assert_int_equal(snapshot_id_parse(id, &s), 0);
        assert_int_equal(s.seq, 12);
        assert_int_equal(s.time, TIME_USEC);
        assert_string_equal(s.writer, WRITER);

        assert_int_equal(snapshot_id_format(SNAPSHOT_SEQ_MAX, 0, "00000000", id), 0);
        assert_string_equal(id, "999999999999-19700101T000000000Z-00000000");
        assert_int_equal(snapshot_id_format(0, 0, "00000000", id), -EINVAL);
        assert_int_equal(snapshot_id_format(SNAPSHOT_SEQ_MAX + 1, 0, "00000000", id), -EINVAL);
        assert_int_equal(snapshot_id_format(1, 0, "0000000", id), -EINVAL);
        assert_int_equal(snapshot_id_format(1, 0, "0000000A", id), -EINVAL);
        assert_int_equal(snapshot_id_format(1, UINT64_C(253402300800) * USEC_PER_SEC, "00000000", id), -EINVAL);
        assert_int_equal(snapshot_id_format(1, UINT64_C(253402300799) * USEC_PER_SEC, "00000000", id), 0);
        assert_string_equal(id, "000000000001-99991231T235959000Z-00000000");
        assert_int_equal(snapshot_id_parse(id, &s), 0);
        assert_int_equal(s.time, UINT64_C(253402300799) * USEC_PER_SEC);

        /* leap day */
        assert_int_equal(snapshot_id_parse("000000000001-20240229T000000000Z-00000000", NULL), 0);
}

static void test_id_parse_strict(void **state) {
        static const char *bad[] = {
                "",
                "000000000000-20261123T160000123Z-b1c51fac",  /* seq 0 */
                "00000000012-20261123T160000123Z-b1c51fac",   /* 11 digits */
                "0000000000012-20261123T160000123Z-b1c51fac", /* 13 digits */
                "+00000000012-20261123T160000123Z-b1c51fac",
                "000000000012-20261123T160000123Z-B1C51FAC",  /* uppercase */
                "000000000012-20261123T160000123Z-b1c51fag",
                "000000000012-20261123T160000123Z-b1c51fa",
                "000000000012-20261123T160000123Z-b1c51fac0",
                "000000000012-20261123T160000123z-b1c51fac",
                "000000000012-20261123t160000123Z-b1c51fac",
                "000000000012_20261123T160000123Z-b1c51fac",
                "000000000012-20261323T160000123Z-b1c51fac",  /* month 13 */
                "000000000012-20260230T160000123Z-b1c51fac",  /* 30 February */
                "000000000012-20250229T160000123Z-b1c51fac",  /* not a leap year */
                "000000000012-21000229T160000123Z-b1c51fac",  /* nor is 2100 */
                "000000000012-20261123T240000123Z-b1c51fac",
                "000000000012-20261123T166000123Z-b1c51fac",
                "000000000012-20261123T160060123Z-b1c51fac",  /* no leap seconds */
                "000000000012-19691231T235959999Z-b1c51fac",
                "000000000012-2026112 T160000123Z-b1c51fac",
                "000000000012-20261123T160000123Z-b1c51fac.json",
                "000000000012-20261123T160000123Z-b1c51fac\n",
                "../../../../etc/passwd-20261123T160000123Z-x",
        };
        SnapshotId s = { .seq = 77 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (snapshot_id_parse(bad[i], &s) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_false(snapshot_id_is_valid(bad[i]));
        }
        assert_int_equal(s.seq, 77); /* untouched */
        assert_int_equal(snapshot_id_parse(NULL, &s), -EINVAL);
}

static int id_qsort_compare(const void *a, const void *b) {
        return snapshot_id_compare(*(const char * const *) a, *(const char * const *) b);
}

static void test_id_compare(void **state) {
        const char *ids[] = {
                "000000000010-20261123T160000000Z-ffffffff",
                "000000000002-20991123T160000000Z-00000000",
                "garbage",
                "000000000010-20261123T160000000Z-0000000a",
                "000000000009-20271123T160000000Z-00000000",
                NULL,
                "000000000010-20261123T160000001Z-00000000",
        };
        const char *sorted[] = {
                NULL,
                "garbage",
                "000000000002-20991123T160000000Z-00000000",
                "000000000009-20271123T160000000Z-00000000",
                "000000000010-20261123T160000000Z-0000000a",
                "000000000010-20261123T160000000Z-ffffffff",
                "000000000010-20261123T160000001Z-00000000",
        };

        qsort(ids, ELEMENTSOF(ids), sizeof(char *), id_qsort_compare);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                if (sorted[i])
                        assert_string_equal(ids[i], sorted[i]);
                else
                        assert_null(ids[i]);
        assert_int_equal(snapshot_id_compare(ID, ID), 0);
        assert_int_equal(snapshot_id_compare(PARENT, ID), -1);
        assert_int_equal(snapshot_id_compare(ID, PARENT), 1);
        assert_int_equal(snapshot_id_compare("x", ID), -1);
        assert_int_equal(snapshot_id_compare("x", "y"), -1);
}

static void test_writer_id(void **state) {
        char w[SNAPSHOT_WRITER_LEN + 1];

        assert_int_equal(snapshot_writer_id(INSTANCE, BOOT, w), 0);
        assert_string_equal(w, WRITER);
        assert_int_equal(snapshot_writer_id("", BOOT, w), -EINVAL);
        assert_int_equal(snapshot_writer_id(INSTANCE, "a b", w), -EINVAL);
        assert_int_equal(snapshot_writer_id(INSTANCE, NULL, w), -EINVAL);
        assert_true(snapshot_writer_field_is_valid("~!"));
        assert_false(snapshot_writer_field_is_valid("\x7f"));
        assert_false(snapshot_writer_field_is_valid("caf\xc3\xa9"));
}

static void test_layout_keys(void **state) {
        static const char *not_manifests[] = {
                "demo-job/main/manifests/" ID ".json.tmp",
                "demo-job/other/manifests/" ID ".json",
                "demo-job/main/manifests/x" ID ".jso",
                "demo-job/main/data/" ID ".json",
                "demo-job/main/manifests/000000000000-20261123T160000123Z-" WRITER ".json",
                "demo-job2/main/manifests/" ID ".json",
                "demo-job/main/manifests/" ID,
        };
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        char id[SNAPSHOT_ID_MAX];

        assert_int_equal(snapshot_manifest_key("demo-job", "main", ID, &a), 0);
        assert_string_equal(a, "demo-job/main/manifests/" ID ".json");
        assert_int_equal(snapshot_object_key("demo-job", "main", SHA_MODEL, &b), 0);
        assert_string_equal(b, "demo-job/main/data/" SHA_MODEL);
        assert_int_equal(snapshot_completion_key("demo-job", &c), 0);
        assert_string_equal(c, "demo-job/COMPLETED.json");

        assert_int_equal(snapshot_manifest_key("..", "main", ID, &a), -EINVAL);
        assert_int_equal(snapshot_manifest_key("demo-job", "Main", ID, &a), -EINVAL);
        assert_int_equal(snapshot_object_key("demo-job", "main", "../x", &b), -EINVAL);

        assert_int_equal(snapshot_manifest_key_to_id(a, "demo-job", "main", id), 0);
        assert_string_equal(id, ID);
        for (size_t i = 0; i < ELEMENTSOF(not_manifests); i++)
                if (snapshot_manifest_key_to_id(not_manifests[i], "demo-job", "main", id) != -EINVAL)
                        fail_msg("\"%s\" taken for a manifest", not_manifests[i]);
}

static void test_path_check(void **state) {
        static const struct {
                const char *path, *problem;
        } cases[] = {
                { "a", NULL }, { "a/b/c", NULL }, { "...", NULL }, { ".a", NULL }, { "a..", NULL },
                { "caf\xc3\xa9/\xf0\x9f\x98\x80", NULL }, { "a b", NULL }, { "a:b", NULL },
                { "", "must not be empty" }, { "/", "absolute path" }, { "/a", "absolute path" },
                { "a/", "empty component" }, { "a//b", "empty component" }, { ".", "\".\" component" },
                { "a/./b", "\".\" component" }, { "..", "\"..\" component" }, { "a/..", "\"..\" component" },
                { "a\\b", "backslash" }, { "a\x7f", "control character" }, { "a\tb", "control character" },
                { "\xff", "not valid UTF-8" }, { "\xed\xa0\x80", "not valid UTF-8" },
                { "\xf4\x90\x80\x80", "not valid UTF-8" },
                { "\xe0\x80\xaf", "not valid UTF-8" }, { "\xc3", "not valid UTF-8" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *p = manifest_path_check(cases[i].path);

                if (cases[i].problem ? !p || !streq(p, cases[i].problem) : p != NULL)
                        fail_msg("\"%s\": got %s, expected %s", cases[i].path, strna(p), strna(cases[i].problem));
        }
}

/* Component and path lengths at their limits. */
static void test_path_lengths(void **state) {
        char name[MANIFEST_NAME_MAX + 2], path[MANIFEST_PATH_MAX + 2];

        memset(name, 'a', sizeof(name));
        name[MANIFEST_NAME_MAX] = '\0';
        assert_null(manifest_path_check(name));
        name[MANIFEST_NAME_MAX] = 'a', name[MANIFEST_NAME_MAX + 1] = '\0';
        assert_string_equal(manifest_path_check(name), "component longer than 255 bytes");
        for (size_t i = 0; i < sizeof(path); i++)
                path[i] = i % 2 ? '/' : 'a';
        path[MANIFEST_PATH_MAX - 1] = 'b';
        path[MANIFEST_PATH_MAX] = '\0';
        assert_null(manifest_path_check(path));
        path[MANIFEST_PATH_MAX] = 'b', path[MANIFEST_PATH_MAX + 1] = '\0';
        assert_string_equal(manifest_path_check(path), "longer than 4096 bytes");
}

/* ---- the completion marker */

static void test_completion_round_trip(void **state) {
        _cleanup_(job_completion_freep) JobCompletion *c = NULL, *p = NULL;
        _cleanup_free_ char *j = NULL, *data = NULL;
        JobCompletionParams params = { .job = "demo-job", .completed_at = UINT64_C(1795458600000999),
                                       .instance_id = INSTANCE, .boot_id = BOOT, .hostname = HOST };
        size_t len, n;
        char *e = NULL;
        int r;

        assert_int_equal(job_completion_new(&params, &c, NULL), 0);
        r = job_completion_to_json(c, &j, &len, &e);
        expect_error(r, &e, -EINVAL, "tasks: must not be empty");
        assert_int_equal(job_completion_add_task(c, "main", ID, NULL), 0);
        assert_int_equal(job_completion_add_task(c, "eval", NULL, NULL), 0);
        r = job_completion_add_task(c, "main", NULL, &e);
        expect_error(r, &e, -EINVAL, "tasks.main: duplicate task");
        r = job_completion_add_task(c, "x", "nope", &e);
        expect_error(r, &e, -EINVAL, "tasks.x: invalid snapshot id \"nope\"");
        r = job_completion_add_task(c, "a b", NULL, &e);
        expect_error(r, &e, -EINVAL, "tasks[\"a b\"]: invalid task name");
        assert_int_equal(job_completion_to_json(c, &j, &len, NULL), 0);
        assert_fixture_equal("completed-valid.json", j, len);

        data = fixture_read("manifest", "completed-valid.json", &n, false);
        assert_int_equal(job_completion_parse(data, n, &p, &e), 0);
        assert_null(e);
        assert_string_equal(p->job, "demo-job");
        assert_int_equal(p->completed_at, UINT64_C(1795458600000000));
        assert_string_equal(p->writer.hostname, HOST);
        assert_int_equal(p->n_tasks, 2);
        assert_string_equal(p->tasks[0].task, "eval");
        assert_null(p->tasks[0].last_snapshot);
        assert_string_equal(job_completion_find_task(p, "main")->last_snapshot, ID);
        assert_null(job_completion_find_task(p, "other"));
}

static const Hostile hostile_markers[] = {
        { "completed-bad-format.json", -EBADMSG,
          "format: unknown format \"trainsupd-snapshot\" (expected \"trainsupd-completed\")" },
        { "completed-bad-version.json", -EPROTONOSUPPORT, "version: written by a newer trainsupd (version 2)" },
        { "completed-bad-task-name.json", -EBADMSG, "tasks[\"Bad Task\"]: invalid task name" },
        { "completed-bad-task-id.json", -EBADMSG, "tasks.eval: invalid snapshot id \"nope\"" },
        { "completed-bad-tasks-empty.json", -EBADMSG, "tasks: must not be empty" },
        { "completed-bad-job.json", -EBADMSG, "job: invalid job id \"..\"" },
        { "completed-bad-time.json", -EBADMSG,
          "completed_at: \"2026-02-30T00:00:00.000Z\" is not an RFC 3339 UTC time with milliseconds "
          "(\"2026-11-23T16:00:00.123Z\")" },
        { "completed-bad-unknown-key.json", -EBADMSG, "snapshots: unknown key" },
        { "completed-bad-task-type.json", -EBADMSG, "tasks.eval: must be a string or null" },
        { "completed-bad-task-duplicate.json", -EBADMSG, "tasks.eval: duplicate task" },
        { "valid-basic.json", -EBADMSG,
          "format: unknown format \"trainsupd-snapshot\" (expected \"trainsupd-completed\")" },
};

static void test_completion_hostile(void **state) {
        _cleanup_free_ char *big = NULL, *e = NULL;
        JobCompletion *c = NULL;

        for (size_t i = 0; i < ELEMENTSOF(hostile_markers); i++) {
                _cleanup_free_ char *data = NULL, *err = NULL;
                size_t n;
                int r;

                data = fixture_read("manifest", hostile_markers[i].name, &n, false);
                r = job_completion_parse(data, n, &c, &err);
                if (r != hostile_markers[i].r || !err || !streq(err, hostile_markers[i].message))
                        fail_msg("%s: got %d \"%s\", expected %d \"%s\"", hostile_markers[i].name, r, strna(err),
                                 hostile_markers[i].r, hostile_markers[i].message);
                assert_null(c);
        }
        big = calloc(1, COMPLETION_SIZE_MAX + 1);
        assert_non_null(big);
        assert_int_equal(job_completion_parse(big, COMPLETION_SIZE_MAX + 1, &c, &e), -EBADMSG);
        assert_string_equal(e, "marker: larger than 1048576 bytes");
}

/* Every bad-*.json fixture is in a table above (a fixture nobody checks proves nothing). */
static bool listed(const Hostile *t, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (streq(t[i].name, name))
                        return true;
        return false;
}

static void test_fixtures_listed(void **state) {
        DIR *d = opendir(FIXTURES_DIR "/manifest");
        struct dirent *de;
        unsigned n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                if (strneq(de->d_name, "bad-", 4)) {
                        if (!listed(hostile, ELEMENTSOF(hostile), de->d_name))
                                fail_msg("%s is not in the table of hostile manifests", de->d_name);
                        n++;
                } else if (strneq(de->d_name, "completed-bad-", 14)) {
                        if (!listed(hostile_markers, ELEMENTSOF(hostile_markers), de->d_name))
                                fail_msg("%s is not in the table of hostile markers", de->d_name);
                        n++;
                }
        }
        closedir(d);
        assert_int_equal(n, ELEMENTSOF(hostile) + ELEMENTSOF(hostile_markers) - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden),
                cmocka_unit_test(test_deterministic),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_valid_fixtures),
                cmocka_unit_test(test_hostile),
                cmocka_unit_test(test_limit_entries),
                cmocka_unit_test(test_limit_parts),
                cmocka_unit_test(test_limit_size),
                cmocka_unit_test(test_nesting),
                cmocka_unit_test(test_builder_entries),
                cmocka_unit_test(test_builder_whole),
                cmocka_unit_test(test_builder_header),
                cmocka_unit_test(test_find_and_objects),
                cmocka_unit_test(test_object_keys_empty),
                cmocka_unit_test(test_id_format_parse),
                cmocka_unit_test(test_id_parse_strict),
                cmocka_unit_test(test_id_compare),
                cmocka_unit_test(test_writer_id),
                cmocka_unit_test(test_layout_keys),
                cmocka_unit_test(test_path_check),
                cmocka_unit_test(test_path_lengths),
                cmocka_unit_test(test_completion_round_trip),
                cmocka_unit_test(test_completion_hostile),
                cmocka_unit_test(test_fixtures_listed),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
