/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "ckpt-scan.h"
#include "fs-util.h"
#include "sha256.h"
#include "stat-cache.h"
#include "strv.h"
#include "task.h"

#define NSEC ((uint64_t) 1000000000ULL)

/* ---- helpers: a temporary directory per test */

static char *tmpdir_new(void) {
        char *d = strdup("/tmp/test-ckpt-scan-XXXXXX");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void tmpdir_remove(char *d) {
        char cmd[256];

        /* rm copes with paths longer than PATH_MAX, which the limit tests create. */
        snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", d, d);
        assert_int_equal(system(cmd), 0);
        free(d);
}

static char *join(const char *a, const char *b) {
        size_t n = strlen(a) + 1 + strlen(b) + 1;
        char *p = malloc(n);

        assert_non_null(p);
        snprintf(p, n, "%s/%s", a, b);
        return p;
}

static void put_file(const char *root, const char *rel, const char *content) {
        _cleanup_free_ char *p = join(root, rel), *dir = NULL;

        dir = strndup(p, (size_t) (strrchr(p, '/') - p));
        assert_non_null(dir);
        assert_int_equal(mkdir_p(dir, 0755), 0);
        assert_int_equal(write_file_atomic(p, content, strlen(content), 0644), 0);
}

static void put_dir(const char *root, const char *rel) {
        _cleanup_free_ char *p = join(root, rel);

        assert_int_equal(mkdir_p(p, 0755), 0);
}

static void put_symlink(const char *root, const char *rel, const char *target) {
        _cleanup_free_ char *p = join(root, rel);

        assert_int_equal(symlink(target, p), 0);
}

static void put_fifo(const char *root, const char *rel) {
        _cleanup_free_ char *p = join(root, rel);

        assert_int_equal(mkfifo(p, 0600), 0);
}

static void set_mtime(const char *root, const char *rel, time_t sec, long nsec) {
        _cleanup_free_ char *p = join(root, rel);
        struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_sec = sec, .tv_nsec = nsec } };

        assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static CkptScan *scan_ok(const char *root, const CkptScanOptions *opts) {
        _cleanup_free_ char *error = NULL;
        CkptScan *s = NULL;
        int r;

        r = ckpt_scan(root, opts, &s, &error);
        if (r < 0)
                fail_msg("scan of %s failed: %s", root, strna(error));
        assert_non_null(s);
        return s;
}

/* The paths of a scan, joined with spaces: one string to compare. */
static char *scan_paths(const CkptScan *s) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        for (size_t i = 0; i < s->n_entries; i++)
                fprintf(f, "%s%s", i > 0 ? " " : "", s->entries[i].path);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static void assert_scan_fails(const char *root, const CkptScanOptions *opts, int expected_r,
                              const char *expected_in_message) {
        _cleanup_free_ char *error = NULL;
        CkptScan *s = NULL;

        assert_int_equal(ckpt_scan(root, opts, &s, &error), expected_r);
        assert_null(s);
        assert_non_null(error);
        if (!strstr(error, expected_in_message))
                fail_msg("message \"%s\" lacks \"%s\"", error, expected_in_message);
}

/* ---- ckpt-scan */

static void test_entry_type_strings(void **state) {
        for (CkptEntryType t = 0; t < _CKPT_ENTRY_TYPE_MAX; t++)
                assert_int_equal(ckpt_entry_type_from_string(ckpt_entry_type_to_string(t)), t);
        assert_string_equal(ckpt_entry_type_to_string(CKPT_ENTRY_SYMLINK), "symlink");
        assert_int_equal(ckpt_entry_type_from_string("fifo"), _CKPT_ENTRY_TYPE_INVALID);
        assert_int_equal(ckpt_entry_type_from_string(NULL), _CKPT_ENTRY_TYPE_INVALID);
        assert_null(ckpt_entry_type_to_string(_CKPT_ENTRY_TYPE_MAX));
}

static void test_scan_tree(void **state) {
        char *d = tmpdir_new(), *other = tmpdir_new();
        _cleanup_free_ char *paths = NULL, *a = join(d, "a.bin"), *link = NULL;
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;
        const CkptEntry *e;
        struct stat st;

        put_file(d, "a.bin", "0123456789");
        assert_int_equal(chmod(a, 0640), 0);
        put_file(d, TASK_COMMIT_FILE_NAME, "");                 /* skipped: top level */
        put_file(d, "sub/" TASK_COMMIT_FILE_NAME, "");          /* kept: only the top one is special */
        put_file(d, "sub/file.txt", "hello");
        put_file(d, "sub/deeper/x", "x");
        put_dir(d, "emptydir");
        put_symlink(d, "link-in", "sub/file.txt");
        put_symlink(d, "link-out", "../../etc/passwd");
        put_symlink(d, "link-abs", "/etc");                     /* a directory outside */
        put_symlink(d, "sub/link-up", "..");                    /* a loop, were it followed */

        s = scan_ok(d, NULL);
        paths = scan_paths(s);
        assert_string_equal(paths, "a.bin emptydir link-abs link-in link-out sub sub/.trainsupd-commit "
                                   "sub/deeper sub/deeper/x sub/file.txt sub/link-up");
        assert_null(s->warnings);
        assert_int_equal(s->n_skipped, 0);
        assert_int_equal(s->total_bytes, 10 + 0 + 5 + 1);

        e = ckpt_scan_find(s, "a.bin");
        assert_non_null(e);
        assert_int_equal(stat(a, &st), 0);
        assert_int_equal(e->type, CKPT_ENTRY_FILE);
        assert_int_equal(e->size, 10);
        assert_int_equal(e->mode, 0640);
        assert_int_equal(e->ino, st.st_ino);
        assert_int_equal(e->dev, st.st_dev);
        assert_int_equal(e->mtime_ns, (uint64_t) st.st_mtim.tv_sec * NSEC + (uint64_t) st.st_mtim.tv_nsec);
        assert_int_equal(e->ctime_ns, (uint64_t) st.st_ctim.tv_sec * NSEC + (uint64_t) st.st_ctim.tv_nsec);
        assert_null(e->target);

        /* Symlinks are reported with their target and never followed: nothing of /etc shows up. */
        e = ckpt_scan_find(s, "link-abs");
        assert_int_equal(e->type, CKPT_ENTRY_SYMLINK);
        assert_string_equal(e->target, "/etc");
        assert_int_equal(e->size, 4);
        assert_null(ckpt_scan_find(s, "link-abs/passwd"));
        e = ckpt_scan_find(s, "link-out");
        assert_int_equal(e->type, CKPT_ENTRY_SYMLINK);
        assert_string_equal(e->target, "../../etc/passwd");
        assert_string_equal(ckpt_scan_find(s, "link-in")->target, "sub/file.txt");
        assert_string_equal(ckpt_scan_find(s, "sub/link-up")->target, "..");

        e = ckpt_scan_find(s, "sub/deeper");
        assert_int_equal(e->type, CKPT_ENTRY_DIR);
        assert_int_equal(e->size, 0);
        assert_int_equal(e->mode, 0755);
        assert_null(ckpt_scan_find(s, TASK_COMMIT_FILE_NAME));
        assert_null(ckpt_scan_find(s, "nope"));

        /* The root itself may be a symlink (a checkpoint_dir on another disk). */
        link = join(other, "root");
        assert_int_equal(symlink(d, link), 0);
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s2 = scan_ok(link, NULL);
                _cleanup_free_ char *paths2 = scan_paths(s2);

                assert_string_equal(paths2, paths);
        }
        tmpdir_remove(other);
        tmpdir_remove(d);
}

static void test_scan_trailing_slash_root(void **state) {
        char *d = tmpdir_new();
        _cleanup_free_ char *root = NULL;
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;

        put_fifo(d, "p");
        assert_true(asprintf(&root, "%s/", d) > 0);
        s = scan_ok(root, NULL);
        assert_int_equal(s->n_entries, 0);
        assert_int_equal(s->n_skipped, 1);
        assert_true(strstr(s->warnings[0], "//") == NULL);
        tmpdir_remove(d);
}

static void test_exclude_compile(void **state) {
        static const char *bad[] = { "", "!keep.pt", "a//b", "../x", "a/./b", "/", "//" };
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                char *l[] = { (char *) "ok", (char *) bad[i], NULL };
                CkptExclude *y = NULL;

                assert_int_equal(ckpt_exclude_new(l, &y, &error), -EINVAL);
                assert_null(y);
                assert_non_null(error);
                assert_non_null(strstr(error, "exclude pattern"));
        }
        {
                char *l[] = { (char *) "\\!bang", NULL };

                assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);
                assert_true(ckpt_exclude_match(x, "d/!bang", false));
                x = ckpt_exclude_free(x);
        }
        /* NULL and empty lists exclude nothing. */
        assert_int_equal(ckpt_exclude_new(NULL, &x, NULL), 0);
        assert_false(ckpt_exclude_match(x, "a", false));
        assert_false(ckpt_exclude_match(NULL, "a", false));
}

static void test_exclude_match(void **state) {
        char *l[] = { (char *) "*.tmp", (char *) "logs/", (char *) "/cache", (char *) "deep/**/b.bin",
                      (char *) "opt/**", (char *) "x/y/z.dat", (char *) "**/gen-*/**/*.part", NULL };
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;

        assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);

        /* Base-name patterns at any depth; '*' matches a leading dot (gitignore). */
        assert_true(ckpt_exclude_match(x, "a.tmp", false));
        assert_true(ckpt_exclude_match(x, "a/b/c/a.tmp", false));
        assert_true(ckpt_exclude_match(x, ".hidden.tmp", false));
        assert_false(ckpt_exclude_match(x, "a.tmp.pt", false));
        /* Directory-only. */
        assert_true(ckpt_exclude_match(x, "logs", true));
        assert_true(ckpt_exclude_match(x, "a/b/logs", true));
        assert_false(ckpt_exclude_match(x, "a/b/logs", false));
        assert_true(ckpt_exclude_match(x, "a/logs/file", false)); /* through its parent */
        /* Anchored. */
        assert_true(ckpt_exclude_match(x, "cache", false));
        assert_true(ckpt_exclude_match(x, "cache/big", false));
        assert_false(ckpt_exclude_match(x, "a/cache", true));
        assert_true(ckpt_exclude_match(x, "x/y/z.dat", false));
        assert_false(ckpt_exclude_match(x, "q/x/y/z.dat", false));
        /* '*' does not match '/'. */
        assert_false(ckpt_exclude_match(x, "x/y/w/z.dat", false));
        /* "**": zero or more components inside, one or more at the end. */
        assert_true(ckpt_exclude_match(x, "deep/b.bin", false));
        assert_true(ckpt_exclude_match(x, "deep/1/2/3/b.bin", false));
        assert_false(ckpt_exclude_match(x, "deep/1/c.bin", false));
        assert_false(ckpt_exclude_match(x, "a/deep/b.bin", false));
        assert_false(ckpt_exclude_match(x, "opt", true));
        assert_true(ckpt_exclude_match(x, "opt/a", false));
        assert_true(ckpt_exclude_match(x, "opt/a/b", true));
        assert_true(ckpt_exclude_match(x, "gen-1/w.part", false));
        assert_true(ckpt_exclude_match(x, "r/gen-1/s/t/w.part", false));
        assert_false(ckpt_exclude_match(x, "r/gen-1/s/t/w.partx", false));
}

/* Many "**" against a deep path: no exponential backtracking. */
static void test_exclude_match_many_stars(void **state) {
        char *l[] = { (char *) "**/a/**/a/**/a/**/a/**/a/**/a/**/b", NULL };
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        char path[2 * CKPT_SCAN_DEPTH_MAX + 1] = "";

        assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);
        for (unsigned i = 0; i < CKPT_SCAN_DEPTH_MAX - 1; i++)
                strcat(path, "a/");
        strcat(path, "c");
        assert_false(ckpt_exclude_match(x, path, false));
        path[strlen(path) - 1] = 'b';
        assert_true(ckpt_exclude_match(x, path, false));
        assert_false(ckpt_exclude_match(x, "a/a/a/a/a/b", false));
        assert_true(ckpt_exclude_match(x, "a/a/a/a/a/a/b", false));
        assert_true(ckpt_exclude_match(x, "z/a/y/a/a/a/a/x/a/w/b", false));
}

static void test_scan_exclude(void **state) {
        char *l[] = { (char *) "*.tmp", (char *) "logs/", (char *) "/cache", (char *) "deep/**/b.bin",
                      (char *) "opt/**", (char *) "x/y/z.dat", NULL };
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;
        _cleanup_free_ char *paths = NULL;
        char *d = tmpdir_new();
        CkptScanOptions opts = {};

        put_file(d, "keep.pt", "k");
        put_file(d, "junk.tmp", "j");
        put_file(d, "a/junk.tmp", "j");
        put_file(d, "a/b/c/junk.tmp", "j");
        put_file(d, "a/b/c/keep.tmp.pt", "k");
        put_file(d, "logs/x.txt", "l");
        put_file(d, "a/logs/y.txt", "l");
        put_file(d, "a/b/logs", "a file, not a directory");
        put_file(d, "cache/big", "c");
        put_file(d, "a/cache/keep", "k");
        put_file(d, "deep/one/two/b.bin", "b");
        put_file(d, "deep/b.bin", "b");
        put_file(d, "deep/one/c.bin", "c");
        put_file(d, "opt/inner/file", "o");
        put_file(d, "x/y/z.dat", "z");
        put_file(d, "q/x/y/z.dat", "z");
        put_fifo(d, "a/pipe.tmp"); /* excluded: no warning either */

        assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);
        opts.exclude = x;
        s = scan_ok(d, &opts);
        paths = scan_paths(s);
        assert_string_equal(paths, "a a/b a/b/c a/b/c/keep.tmp.pt a/b/logs a/cache a/cache/keep deep deep/one "
                                   "deep/one/c.bin deep/one/two keep.pt opt q q/x q/x/y q/x/y/z.dat x x/y");
        assert_int_equal(s->n_skipped, 0);
        assert_null(s->warnings);
        tmpdir_remove(d);
}

static void test_scan_special_files(void **state) {
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;
        _cleanup_free_ char *paths = NULL, *sock_path = NULL, *expected = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -EBADF;
        char *d = tmpdir_new();

        put_file(d, "f", "data");
        put_fifo(d, "pipe");
        put_dir(d, "sub");
        sock_path = join(d, "sub/sock");
        assert_true(strlen(sock_path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, sock_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);

        s = scan_ok(d, NULL);
        paths = scan_paths(s);
        assert_string_equal(paths, "f sub");
        assert_int_equal(s->n_skipped, 2);
        assert_int_equal(strv_length(s->warnings), 2);
        assert_true(asprintf(&expected, "%s/pipe: skipped, a fifo", d) > 0);
        assert_true(streq(s->warnings[0], expected) || streq(s->warnings[1], expected));
        free(expected);
        assert_true(asprintf(&expected, "%s/sub/sock: skipped, a socket", d) > 0);
        assert_true(streq(s->warnings[0], expected) || streq(s->warnings[1], expected));
        tmpdir_remove(d);
}

static void test_scan_warnings_bounded(void **state) {
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;
        char *d = tmpdir_new();

        for (unsigned i = 0; i < CKPT_SCAN_WARNINGS_MAX + 6; i++) {
                char name[32];

                snprintf(name, sizeof(name), "p%u", i);
                put_fifo(d, name);
        }
        s = scan_ok(d, NULL);
        assert_int_equal(s->n_entries, 0);
        assert_int_equal(s->n_skipped, CKPT_SCAN_WARNINGS_MAX + 6);
        assert_int_equal(strv_length(s->warnings), CKPT_SCAN_WARNINGS_MAX);
        tmpdir_remove(d);
}

/* Root reads every directory: take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the effective
 * set for a while (they stay permitted, so they can come back). */
typedef struct CapState {
        struct __user_cap_header_struct header;
        struct __user_cap_data_struct data[2];
} CapState;

static bool dac_caps_drop(CapState *saved) {
        struct __user_cap_data_struct d[2];

        saved->header = (struct __user_cap_header_struct) { .version = _LINUX_CAPABILITY_VERSION_3 };
        if (syscall(SYS_capget, &saved->header, saved->data) < 0)
                return false;
        memcpy(d, saved->data, sizeof(d));
        d[0].effective &= ~((1U << CAP_DAC_OVERRIDE) | (1U << CAP_DAC_READ_SEARCH));
        return syscall(SYS_capset, &saved->header, d) == 0;
}

static void dac_caps_restore(CapState *saved) {
        assert_int_equal(syscall(SYS_capset, &saved->header, saved->data), 0);
}

static void test_scan_unreadable(void **state) {
        _cleanup_free_ char *locked = NULL, *expected = NULL, *missing = NULL;
        char *d = tmpdir_new();
        CapState caps;
        int fd;

        put_file(d, "ok/file", "x");
        put_file(d, "ok/locked/secret", "s");
        locked = join(d, "ok/locked");
        assert_int_equal(chmod(locked, 0), 0);

        if (!dac_caps_drop(&caps)) {
                tmpdir_remove(d);
                skip();
        }
        fd = open(locked, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                close(fd);
                dac_caps_restore(&caps);
                tmpdir_remove(d);
                skip();
        }
        assert_true(asprintf(&expected, "%s: Permission denied", locked) > 0);
        assert_scan_fails(d, NULL, -EACCES, expected);
        dac_caps_restore(&caps);

        /* A missing root names the root. */
        missing = join(d, "missing");
        free(expected);
        assert_true(asprintf(&expected, "%s: No such file or directory", missing) > 0);
        assert_scan_fails(missing, NULL, -ENOENT, expected);
        /* A root that is a file. */
        free(missing);
        missing = join(d, "ok/file");
        assert_scan_fails(missing, NULL, -ENOTDIR, "ok/file: Not a directory");
        tmpdir_remove(d);
}

/* Creates n nested directories named name under root, through directory fds (the whole path may
 * be longer than PATH_MAX). */
static void put_nested(const char *root, const char *name, unsigned n) {
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        for (unsigned i = 0; i < n; i++) {
                int sub;

                assert_int_equal(mkdirat(fd, name, 0755), 0);
                sub = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(sub >= 0);
                close(fd);
                fd = sub;
        }
        close(fd);
}

static void test_scan_depth_limit(void **state) {
        char *d = tmpdir_new(), *e = tmpdir_new();
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        CkptScanOptions opts = {};
        char *l[] = { (char *) "d/d/d/d/d/d/d/d/d/d/**", NULL };

        /* 64 levels are fine, 65 are not. */
        put_nested(d, "d", CKPT_SCAN_DEPTH_MAX);
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(s->n_entries, CKPT_SCAN_DEPTH_MAX);
                assert_int_equal(strlen(s->entries[CKPT_SCAN_DEPTH_MAX - 1].path), 2 * CKPT_SCAN_DEPTH_MAX - 1);
        }
        put_nested(e, "d", CKPT_SCAN_DEPTH_MAX + 1);
        assert_scan_fails(e, NULL, -ELOOP, "/d/d: deeper than 64 levels");

        /* What is excluded does not count. */
        assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);
        opts.exclude = x;
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(e, &opts);

                assert_int_equal(s->n_entries, 10);
        }
        /* A lower limit; a higher one is capped. */
        opts = (CkptScanOptions) { .max_depth = 3 };
        assert_scan_fails(d, &opts, -ELOOP, "/d/d/d/d: deeper than 3 levels");
        opts.max_depth = 1000;
        assert_scan_fails(e, &opts, -ELOOP, "deeper than 64 levels");
        tmpdir_remove(d);
        tmpdir_remove(e);
}

static void test_scan_path_limit(void **state) {
        char name[251], *d = tmpdir_new();

        /* 17 components of 250 bytes: 4266 bytes, within the depth limit. */
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        put_nested(d, name, 17);
        assert_scan_fails(d, NULL, -ENAMETOOLONG, "path longer than 4096 bytes");
        tmpdir_remove(d);
}

static void test_scan_entries_limit(void **state) {
        CkptScanOptions opts = { .max_entries = 10 };
        char *d = tmpdir_new();

        for (unsigned i = 0; i < 10; i++) {
                char name[32];

                snprintf(name, sizeof(name), "f%u", i);
                put_file(d, name, "x");
        }
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, &opts);

                assert_int_equal(s->n_entries, 10);
        }
        put_file(d, "f10", "x");
        assert_scan_fails(d, &opts, -E2BIG, "more than 10 entries");
        tmpdir_remove(d);
}

static void test_scan_quiet_since(void **state) {
        char *l[] = { (char *) "*.log", NULL };
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        CkptScanOptions opts = {};
        char *d = tmpdir_new();
        uint64_t newest = 0;

        put_file(d, "a", "a");
        put_file(d, "s/b", "b");
        put_file(d, "train.log", "l");
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                newest = MAX(s->root_mtime_ns, s->root_ctime_ns);
                for (size_t i = 0; i < s->n_entries; i++)
                        newest = MAX(newest, MAX(s->entries[i].mtime_ns, s->entries[i].ctime_ns));
                assert_int_equal(ckpt_scan_quiet_since_ns(s), newest);
                assert_true(s->started_ns > 0);
        }
        /* A file dated in the future (2100) sets it; an excluded one (2200) does not. */
        set_mtime(d, "s/b", 4102444800, 5);
        set_mtime(d, "train.log", 7258118400, 0);
        assert_int_equal(ckpt_exclude_new(l, &x, NULL), 0);
        opts.exclude = x;
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, &opts);

                assert_int_equal(ckpt_scan_quiet_since_ns(s), 4102444800 * NSEC + 5);
        }
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(ckpt_scan_quiet_since_ns(s), 7258118400 * NSEC);
        }
        tmpdir_remove(d);
}

/* ---- sha256 */

static const char *hex_of(const uint8_t digest[static SHA256_DIGEST_SIZE]) {
        static char buf[SHA256_HEX_SIZE];

        return sha256_to_hex(digest, buf);
}

static void test_sha256_vectors(void **state) {
        static const struct {
                const char *in, *hex;
        } v[] = {
                { "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
                { "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
                { "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
        };
        _cleanup_(sha256_ctx_freep) Sha256Ctx *c = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE], back[SHA256_DIGEST_SIZE];

        assert_int_equal(sha256_ctx_new(&c), 0);
        for (size_t i = 0; i < ELEMENTSOF(v); i++) {
                size_t len = strlen(v[i].in);

                assert_int_equal(sha256_buffer(v[i].in, len, digest), 0);
                assert_string_equal(hex_of(digest), v[i].hex);
                assert_int_equal(sha256_from_hex(v[i].hex, back), 0);
                assert_memory_equal(back, digest, sizeof(digest));

                /* Streaming, one byte at a time, the context reused after each final. */
                for (size_t k = 0; k < len; k++)
                        assert_int_equal(sha256_ctx_update(c, v[i].in + k, 1), 0);
                assert_int_equal(sha256_ctx_bytes(c), len);
                assert_int_equal(sha256_ctx_final(c, digest), 0);
                assert_string_equal(hex_of(digest), v[i].hex);
                assert_int_equal(sha256_ctx_bytes(c), 0);
        }
        assert_int_equal(sha256_buffer(NULL, 0, digest), 0);
        assert_string_equal(hex_of(digest), v[0].hex);
}

static void test_sha256_hex(void **state) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];

        for (size_t i = 0; i < sizeof(digest); i++)
                digest[i] = (uint8_t) (i * 37 + 1);
        sha256_to_hex(digest, hex);
        assert_int_equal(strlen(hex), 64);
        assert_true(sha256_hex_valid(hex));
        hex[5] = 'A';
        assert_false(sha256_hex_valid(hex));
        assert_int_equal(sha256_from_hex(hex, digest), -EINVAL);
        assert_false(sha256_hex_valid(""));
        assert_false(sha256_hex_valid(NULL));
        assert_false(sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
        assert_false(sha256_hex_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550"));
        assert_false(sha256_hex_valid("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

#define BIG_SIZE ((size_t) 3 * 1024 * 1024 + 123)

static uint8_t *big_data(void) {
        uint8_t *p = malloc(BIG_SIZE);
        uint64_t x = 0x9e3779b97f4a7c15ULL;

        assert_non_null(p);
        for (size_t i = 0; i < BIG_SIZE; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                p[i] = (uint8_t) x;
        }
        return p;
}

static void sha256sum_of(const char *path, char ret[static SHA256_HEX_SIZE]) {
        _cleanup_free_ char *cmd = NULL;
        char line[256];
        FILE *f;

        assert_true(asprintf(&cmd, "sha256sum '%s'", path) > 0);
        f = popen(cmd, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        assert_int_equal(pclose(f), 0);
        memcpy(ret, line, 64);
        ret[64] = 0;
}

static void test_sha256_file(void **state) {
        static const struct {
                uint64_t offset, length;
        } ranges[] = {
                { 0, 0 },
                { 0, 1 },
                { 1, SHA256_READ_BLOCK },
                { SHA256_READ_BLOCK - 1, SHA256_READ_BLOCK + 2 },
                { 2 * SHA256_READ_BLOCK, SHA256_READ_BLOCK },
                { BIG_SIZE - 5, 5 },
                { BIG_SIZE, 0 },
                { 0, BIG_SIZE },
        };
        _cleanup_free_ uint8_t *data = big_data();
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint8_t digest[SHA256_DIGEST_SIZE], expect[SHA256_DIGEST_SIZE];
        char reference[SHA256_HEX_SIZE];
        char *d = tmpdir_new();
        uint64_t n = 0;

        path = join(d, "big");
        assert_int_equal(write_file_atomic(path, data, BIG_SIZE, 0644), 0);
        sha256sum_of(path, reference);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);

        /* Whole file, against coreutils. */
        assert_int_equal(sha256_fd_range(fd, 0, SHA256_TO_EOF, digest, &n), 0);
        assert_int_equal(n, BIG_SIZE);
        assert_string_equal(hex_of(digest), reference);
        assert_int_equal(sha256_buffer(data, BIG_SIZE, digest), 0);
        assert_string_equal(hex_of(digest), reference);

        /* Ranges, against the same bytes in memory. */
        for (size_t i = 0; i < ELEMENTSOF(ranges); i++) {
                assert_int_equal(sha256_fd_range(fd, ranges[i].offset, ranges[i].length, digest, &n), 0);
                assert_int_equal(n, ranges[i].length);
                assert_int_equal(sha256_buffer(data + ranges[i].offset, ranges[i].length, expect), 0);
                assert_memory_equal(digest, expect, sizeof(digest));
        }
        /* Up to the end from an offset. */
        assert_int_equal(sha256_fd_range(fd, 12345, SHA256_TO_EOF, digest, &n), 0);
        assert_int_equal(n, BIG_SIZE - 12345);
        assert_int_equal(sha256_buffer(data + 12345, BIG_SIZE - 12345, expect), 0);
        assert_memory_equal(digest, expect, sizeof(digest));
        assert_int_equal(sha256_fd_range(fd, BIG_SIZE + 10, SHA256_TO_EOF, digest, &n), 0);
        assert_int_equal(n, 0);
        assert_string_equal(hex_of(digest), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

        /* A range past the end: the file is shorter than it was said to be. */
        assert_int_equal(sha256_fd_range(fd, BIG_SIZE - 5, 6, digest, NULL), -ENODATA);
        assert_int_equal(sha256_fd_range(fd, BIG_SIZE + 1, 1, digest, NULL), -ENODATA);
        assert_int_equal(sha256_fd_range(fd, UINT64_MAX - 1, 1, digest, NULL), -EOVERFLOW);
        /* A bad fd. */
        {
                int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_int_equal(sha256_fd_range(dfd, 0, SHA256_TO_EOF, digest, NULL), -EISDIR);
                close(dfd);
        }
        tmpdir_remove(d);
}

/* ---- stat-cache */

#define HEX_A "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define HEX_B "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static CkptEntry file_entry(const char *path, uint64_t mtime_ns) {
        return (CkptEntry) {
                .path = (char *) path,
                .type = CKPT_ENTRY_FILE,
                .size = 100,
                .mode = 0644,
                .mtime_ns = mtime_ns,
                .ctime_ns = mtime_ns,
                .ino = 1234,
                .dev = 66,
        };
}

static void test_stat_cache_match(void **state) {
        _cleanup_(stat_cache_freep) StatCache *c = NULL;
        uint64_t t = 1700000000 * NSEC + 123456789;
        CkptEntry e = file_entry("a/b.pt", t), x;
        char hex[SHA256_HEX_SIZE];

        assert_int_equal(stat_cache_new(&c), 0);
        assert_int_equal(stat_cache_lookup(c, &e, hex), 0);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t + 1), 0);
        assert_int_equal(stat_cache_size(c), 1);
        assert_int_equal(stat_cache_lookup(c, &e, hex), 1);
        assert_string_equal(hex, HEX_A);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 1);

        /* Any of the five stat values differs: a miss. */
        x = e, x.size++;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.mtime_ns--;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.ctime_ns++;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.ino++;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.dev++;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.path = (char *) "a/c.pt";
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        x = e, x.type = CKPT_ENTRY_SYMLINK;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 0);
        /* The mode is not part of the key: a chmod changes ctime anyway. */
        x = e, x.mode = 0600;
        assert_int_equal(stat_cache_lookup(c, &x, hex), 1);

        /* Put replaces. */
        x = e, x.size = 5;
        assert_int_equal(stat_cache_put(c, &x, HEX_B, t + 1), 0);
        assert_int_equal(stat_cache_size(c), 1);
        assert_int_equal(stat_cache_lookup(c, &e, hex), 0);
        assert_int_equal(stat_cache_lookup(c, &x, hex), 1);
        assert_string_equal(hex, HEX_B);

        /* Bad input. */
        x = e, x.type = CKPT_ENTRY_DIR;
        assert_int_equal(stat_cache_put(c, &x, HEX_A, t + 1), -EINVAL);
        assert_int_equal(stat_cache_put(c, &e, "abc", t + 1), -EINVAL);
        assert_int_equal(stat_cache_put(c, &e, NULL, t + 1), -EINVAL);

        assert_int_equal(stat_cache_remove(c, "a/b.pt"), 1);
        assert_int_equal(stat_cache_remove(c, "a/b.pt"), 0);
        assert_int_equal(stat_cache_size(c), 0);
}

static void test_stat_cache_racy(void **state) {
        _cleanup_(stat_cache_freep) StatCache *c = NULL;
        uint64_t t = 1700000000 * NSEC + 500;
        CkptEntry e = file_entry("f", t);

        assert_int_equal(stat_cache_new(&c), 0);
        /* Stamped in the same instant as the file's mtime: it may still change unseen. */
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t - 1), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        /* Hashed again by a later scan: now trusted. */
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t + 1), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 1);
        /* ctime counts too (touch -d, mv keep an old mtime). */
        e.ctime_ns = t + 10;
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t + 10), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, t + 11), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 1);

        /* Whole-second timestamps: a filesystem with coarse times; two seconds of slack. */
        e = file_entry("g", 1700000000 * NSEC);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, e.mtime_ns + NSEC), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, e.mtime_ns + STAT_CACHE_COARSE_SLACK_NS), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        assert_int_equal(stat_cache_put(c, &e, HEX_A, e.mtime_ns + STAT_CACHE_COARSE_SLACK_NS + 1), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 1);
}

/* With real files: a scan's entries, then a change of size, of mtime, of inode. */
static void test_stat_cache_real_files(void **state) {
        _cleanup_(stat_cache_freep) StatCache *c = NULL;
        _cleanup_free_ char *p = NULL, *tmp = NULL;
        char *d = tmpdir_new();
        char hex[SHA256_HEX_SIZE];
        uint64_t stamp;

        put_file(d, "w.bin", "weights-1");
        put_file(d, "o.bin", "optimizer");
        /* Old mtimes: a rewrite below gets a different one even within one clock tick. */
        set_mtime(d, "w.bin", 1600000000, 7);
        set_mtime(d, "o.bin", 1600000000, 7);
        assert_int_equal(stat_cache_new(&c), 0);
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                /* Files this fresh are racily clean for this scan's own stamp; a later scan's stamp
                 * (as when they are hashed again next time) makes them trusted. */
                stamp = ckpt_scan_quiet_since_ns(s) + 1;
                for (size_t i = 0; i < s->n_entries; i++)
                        assert_int_equal(stat_cache_put(c, &s->entries[i], HEX_A, stamp), 0);
        }
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "w.bin"), hex), 1);
                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "o.bin"), hex), 1);
        }
        /* Size. */
        put_file(d, "w.bin", "weights-22");
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "w.bin"), hex), 0);
                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "o.bin"), hex), 1);
        }
        /* mtime only (same size, same inode). */
        p = join(d, "o.bin");
        {
                int fd = open(p, O_WRONLY | O_CLOEXEC);

                assert_true(fd >= 0);
                assert_int_equal(pwrite(fd, "O", 1, 0), 1);
                close(fd);
        }
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "o.bin"), hex), 0);
                stamp = ckpt_scan_quiet_since_ns(s) + 1;
                assert_int_equal(stat_cache_put(c, ckpt_scan_find(s, "o.bin"), HEX_B, stamp), 0);
                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "o.bin"), hex), 1);
        }
        /* Inode: the same bytes renamed into place, its times copied from the old file. */
        tmp = join(d, "o.new");
        {
                struct stat st;
                struct timespec ts[2];

                assert_int_equal(stat(p, &st), 0);
                ts[0] = st.st_atim;
                ts[1] = st.st_mtim;
                assert_int_equal(write_file_atomic(tmp, "Optimizer", 9, 0644), 0);
                assert_int_equal(utimensat(AT_FDCWD, tmp, ts, 0), 0);
                assert_int_equal(rename(tmp, p), 0);
        }
        {
                _cleanup_(ckpt_scan_freep) CkptScan *s = scan_ok(d, NULL);

                assert_int_equal(stat_cache_lookup(c, ckpt_scan_find(s, "o.bin"), hex), 0);
                /* retain() drops what the scan lacks. */
                CkptEntry gone = file_entry("gone.bin", 5);

                assert_int_equal(stat_cache_put(c, &gone, HEX_A, 10), 0);
                assert_int_equal(stat_cache_size(c), 3);
                assert_int_equal(stat_cache_retain(c, s), 1);
                assert_int_equal(stat_cache_size(c), 2);
        }
        tmpdir_remove(d);
}

static void test_stat_cache_persist(void **state) {
        _cleanup_(stat_cache_freep) StatCache *c = NULL, *c2 = NULL;
        _cleanup_free_ char *path = NULL, *text = NULL;
        CkptEntry e1 = file_entry("z/last", UINT64_MAX - 7), e2 = file_entry("a \"quoted\"\n\xc3\xa9", 1);
        const char *prefix = "{\"version\":1,\"entries\":[{\"path\":\"a \\\"quoted\\\"\\n\xc3\xa9\",";
        char *d = tmpdir_new();
        char hex[SHA256_HEX_SIZE];

        e1.ino = UINT64_MAX;
        e1.dev = (uint64_t) 1 << 60;
        e1.size = 9007199254740993ULL; /* 2^53 + 1: not a double */
        e1.ctime_ns = 1;
        assert_int_equal(stat_cache_new(&c), 0);
        assert_int_equal(stat_cache_put(c, &e1, HEX_A, UINT64_MAX), 0);
        assert_int_equal(stat_cache_put(c, &e2, HEX_B, 2), 0);
        path = join(d, "stat-cache.json");
        assert_int_equal(stat_cache_save(c, path), 0);

        assert_int_equal(read_file_bounded(path, 1 << 20, &text, NULL), 0);
        assert_true(strncmp(text, prefix, strlen(prefix)) == 0);
        assert_non_null(strstr(text, "\"size\":\"9007199254740993\""));
        assert_non_null(strstr(text, "\"ino\":\"18446744073709551615\""));

        assert_int_equal(stat_cache_new(&c2), 0);
        assert_int_equal(stat_cache_load(c2, path), 0);
        assert_int_equal(stat_cache_size(c2), 2);
        assert_int_equal(stat_cache_lookup(c2, &e1, hex), 1);
        assert_string_equal(hex, HEX_A);
        assert_int_equal(stat_cache_lookup(c2, &e2, hex), 1);
        assert_string_equal(hex, HEX_B);

        /* Loading again replaces, it does not add. */
        assert_int_equal(stat_cache_load(c2, path), 0);
        assert_int_equal(stat_cache_size(c2), 2);
        {
                struct stat st;

                assert_int_equal(stat(path, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0600);
        }
        tmpdir_remove(d);
}

/* One entry as stat_cache_save() writes it. */
#define ENTRY(path, size, hex)                                                                           \
        "{\"path\":\"" path "\",\"size\":\"" size "\",\"mtime_ns\":\"1\",\"ctime_ns\":\"1\",\"ino\":\"1\"," \
        "\"dev\":\"1\",\"stamp_ns\":\"9\",\"sha256\":\"" hex "\"}"

static void test_stat_cache_garbage(void **state) {
        static const char *bad[] = {
                "",
                "not json",
                "{\"version\":1,\"entries\":[",
                "[]",
                "{}",
                "{\"version\":2,\"entries\":[]}",
                "{\"version\":\"1\",\"entries\":[]}",
                "{\"version\":1,\"entries\":{}}",
                "{\"version\":1,\"entries\":[1]}",
                "{\"version\":1,\"entries\":[{\"path\":\"a\"}]}",
                "{\"version\":1,\"entries\":[" ENTRY("a", "1", HEX_A) "," ENTRY("a", "1", HEX_B) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("a", "1", "xyz") "]}",
                "{\"version\":1,\"entries\":[" ENTRY("a", "18446744073709551616", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("a", "-1", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("a", "", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("../a", "1", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("/a", "1", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("a//b", "1", HEX_A) "]}",
                "{\"version\":1,\"entries\":[" ENTRY("", "1", HEX_A) "]}",
                "{\"version\":1,\"entries\":[{\"path\":\"a\",\"size\":1,\"mtime_ns\":\"1\",\"ctime_ns\":\"1\","
                "\"ino\":\"1\",\"dev\":\"1\",\"stamp_ns\":\"9\",\"sha256\":\"" HEX_A "\"}]}",
                "{\"version\":1,\"entries\":[]} trailing",
        };
        static const char good[] = "{\"version\":1,\"entries\":[" ENTRY("a", "1", HEX_A) "]}";
#undef ENTRY
        _cleanup_(stat_cache_freep) StatCache *c = NULL;
        _cleanup_free_ char *path = NULL;
        char *d = tmpdir_new();
        CkptEntry e = file_entry("a", 1);

        e.size = 1;
        e.ino = 1;
        e.dev = 1;
        path = join(d, "cache.json");
        assert_int_equal(stat_cache_new(&c), 0);
        assert_int_equal(stat_cache_load(c, path), -ENOENT);
        assert_int_equal(stat_cache_size(c), 0);

        assert_int_equal(write_file_atomic(path, good, strlen(good), 0600), 0);
        assert_int_equal(stat_cache_load(c, path), 0);
        assert_int_equal(stat_cache_lookup(c, &e, NULL), 1);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                /* Loaded with good content first: a broken file leaves nothing behind. */
                assert_int_equal(write_file_atomic(path, good, strlen(good), 0600), 0);
                assert_int_equal(stat_cache_load(c, path), 0);
                assert_int_equal(write_file_atomic(path, bad[i], strlen(bad[i]), 0600), 0);
                if (stat_cache_load(c, path) != -EBADMSG)
                        fail_msg("not refused: %s", bad[i]);
                assert_int_equal(stat_cache_size(c), 0);
                assert_int_equal(stat_cache_lookup(c, &e, NULL), 0);
        }

        /* Too large a file. */
        {
                int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);

                assert_true(fd >= 0);
                assert_int_equal(ftruncate(fd, STAT_CACHE_FILE_MAX + 1), 0);
                close(fd);
                assert_int_equal(stat_cache_load(c, path), -EFBIG);
        }
        /* Not a regular file. */
        assert_true(stat_cache_load(c, d) < 0);
        tmpdir_remove(d);
}

static void test_stat_cache_bounded(void **state) {
        _cleanup_(stat_cache_freep) StatCache *c = NULL;
        char name[32];
        CkptEntry e = file_entry(name, 1);

        assert_int_equal(stat_cache_new(&c), 0);
        for (unsigned i = 0; i < STAT_CACHE_ENTRIES_MAX; i++) {
                snprintf(name, sizeof(name), "f%u", i);
                assert_int_equal(stat_cache_put(c, &e, HEX_A, 2), 0);
        }
        snprintf(name, sizeof(name), "one-more");
        assert_int_equal(stat_cache_put(c, &e, HEX_A, 2), -E2BIG);
        /* Updating what is there still works. */
        snprintf(name, sizeof(name), "f7");
        assert_int_equal(stat_cache_put(c, &e, HEX_B, 2), 0);
        assert_int_equal(stat_cache_size(c), STAT_CACHE_ENTRIES_MAX);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_entry_type_strings),
                cmocka_unit_test(test_scan_tree),
                cmocka_unit_test(test_scan_trailing_slash_root),
                cmocka_unit_test(test_exclude_compile),
                cmocka_unit_test(test_exclude_match),
                cmocka_unit_test(test_exclude_match_many_stars),
                cmocka_unit_test(test_scan_exclude),
                cmocka_unit_test(test_scan_special_files),
                cmocka_unit_test(test_scan_warnings_bounded),
                cmocka_unit_test(test_scan_unreadable),
                cmocka_unit_test(test_scan_depth_limit),
                cmocka_unit_test(test_scan_path_limit),
                cmocka_unit_test(test_scan_entries_limit),
                cmocka_unit_test(test_scan_quiet_since),
                cmocka_unit_test(test_sha256_vectors),
                cmocka_unit_test(test_sha256_hex),
                cmocka_unit_test(test_sha256_file),
                cmocka_unit_test(test_stat_cache_match),
                cmocka_unit_test(test_stat_cache_racy),
                cmocka_unit_test(test_stat_cache_real_files),
                cmocka_unit_test(test_stat_cache_persist),
                cmocka_unit_test(test_stat_cache_garbage),
                cmocka_unit_test(test_stat_cache_bounded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
