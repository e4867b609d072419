/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt-scan.h"
#include "strv.h"
#include "task.h"

#define NSEC_PER_SEC ((uint64_t) 1000000000ULL)

DEFINE_CLEANUP_FUNC(DIR *, closedir);

static const char * const entry_type_table[_CKPT_ENTRY_TYPE_MAX] = {
        [CKPT_ENTRY_FILE] = "file",
        [CKPT_ENTRY_DIR] = "dir",
        [CKPT_ENTRY_SYMLINK] = "symlink",
};

const char *ckpt_entry_type_to_string(CkptEntryType t) {
        if (t < 0 || t >= _CKPT_ENTRY_TYPE_MAX)
                return NULL;
        return entry_type_table[t];
}

CkptEntryType ckpt_entry_type_from_string(const char *s) {
        if (!s)
                return _CKPT_ENTRY_TYPE_INVALID;
        for (CkptEntryType t = 0; t < _CKPT_ENTRY_TYPE_MAX; t++)
                if (streq(entry_type_table[t], s))
                        return t;
        return _CKPT_ENTRY_TYPE_INVALID;
}

/* ---- exclude patterns */

typedef struct ExcludePattern {
        char **components;      /* "**" stands for any number of components */
        size_t n_components;
        bool dir_only;
} ExcludePattern;

struct CkptExclude {
        ExcludePattern *patterns;
        size_t n_patterns;
};

CkptExclude *ckpt_exclude_free(CkptExclude *x) {
        if (!x)
                return NULL;
        for (size_t i = 0; i < x->n_patterns; i++)
                strv_free(x->patterns[i].components);
        free(x->patterns);
        return mfree(x);
}

static bool is_double_star(const char *c) {
        return streq(c, "**");
}

/* Splits p (no leading or trailing '/') into components; sets *ret_why on -EINVAL. */
static int pattern_split(char *p, bool anchored, char ***ret, const char **ret_why) {
        _cleanup_strv_free_ char **c = NULL;
        size_t n;
        int r;

        /* A pattern without '/' matches the base name at any depth: it is "**" + "/" + pattern. */
        if (!anchored) {
                r = strv_extend(&c, "**");
                if (r < 0)
                        return r;
        }
        for (char *s = p, *e; s; s = e) {
                e = strchr(s, '/');
                if (e)
                        *e++ = 0;
                if (isempty(s)) {
                        *ret_why = "empty path component";
                        return -EINVAL;
                }
                if (streq(s, ".") || streq(s, "..")) {
                        *ret_why = "\".\" and \"..\" components never match";
                        return -EINVAL;
                }
                /* Adjacent "**" mean the same as one. */
                if (is_double_star(s) && c && is_double_star(c[strv_length(c) - 1]))
                        continue;
                r = strv_extend(&c, s);
                if (r < 0)
                        return r;
        }
        /* A trailing "**" matches what is inside, not the directory itself: one component or more,
         * i.e. "*" then "**" (which then matches zero or more, like any other "**"). */
        n = strv_length(c);
        if (is_double_star(c[n - 1])) {
                c[n - 1] = mfree(c[n - 1]);
                r = strv_extend(&c, "*");
                if (r >= 0)
                        r = strv_extend(&c, "**");
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static int pattern_compile(const char *text, ExcludePattern *ret, const char **ret_why) {
        _cleanup_free_ char *copy = NULL;
        char **components = NULL;
        size_t len = strlen(text);
        bool dir_only, anchored;
        char *p;
        int r;

        if (len == 0) {
                *ret_why = "empty pattern";
                return -EINVAL;
        }
        if (len > CKPT_SCAN_PATH_MAX) {
                *ret_why = "pattern too long";
                return -EINVAL;
        }
        if (text[0] == '!') {
                *ret_why = "negation (a leading '!') is not supported; write \\! for a literal '!'";
                return -EINVAL;
        }
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        dir_only = len > 1 && copy[len - 1] == '/';
        if (dir_only)
                copy[--len] = 0;
        anchored = strchr(copy, '/');
        p = copy[0] == '/' ? copy + 1 : copy;
        if (!*p) {
                *ret_why = "empty pattern";
                return -EINVAL;
        }
        r = pattern_split(p, anchored, &components, ret_why);
        if (r < 0)
                return r;
        *ret = (ExcludePattern) {
                .components = components,
                .n_components = strv_length(components),
                .dir_only = dir_only,
        };
        return 0;
}

int ckpt_exclude_new(char * const *patterns, CkptExclude **ret, char **ret_error) {
        _cleanup_(ckpt_exclude_freep) CkptExclude *x = NULL;
        size_t n = strv_length(patterns);
        int r;

        assert(ret);

        x = calloc(1, sizeof(CkptExclude));
        if (!x)
                return -ENOMEM;
        x->patterns = calloc(MAX(n, (size_t) 1), sizeof(ExcludePattern));
        if (!x->patterns)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *why = NULL;

                r = pattern_compile(patterns[i], &x->patterns[i], &why);
                if (r < 0) {
                        if (r == -EINVAL && ret_error &&
                            asprintf(ret_error, "exclude pattern \"%s\": %s", patterns[i], why) < 0)
                                *ret_error = NULL;
                        return r;
                }
                x->n_patterns++;
        }
        *ret = TAKE_PTR(x);
        return 0;
}

/* Wildcard matching over components, "**" being the wildcard: on a mismatch, let the last "**" seen
 * take one more component and go on from there. At most n_pat * n_comp fnmatch() calls, whatever the
 * number of "**". Components hold no '/', so fnmatch() flags 0 here is FNM_PATHNAME on the path. */
static bool components_match(char * const *pat, size_t n_pat, const char * const *comp, size_t n_comp) {
        size_t p = 0, c = 0, star = SIZE_MAX, star_c = 0;

        while (c < n_comp) {
                if (p < n_pat && is_double_star(pat[p])) {
                        star = p++;
                        star_c = c;
                } else if (p < n_pat && fnmatch(pat[p], comp[c], 0) == 0) {
                        p++;
                        c++;
                } else if (star != SIZE_MAX) {
                        p = star + 1;
                        c = ++star_c;
                } else
                        return false;
        }
        while (p < n_pat && is_double_star(pat[p]))
                p++;
        return p == n_pat;
}

/* Whether the path made of comp[0..n) itself matches a pattern (its parents are not looked at). */
static bool exclude_match_components(const CkptExclude *x, const char * const *comp, size_t n, bool is_dir) {
        for (size_t i = 0; i < x->n_patterns; i++) {
                const ExcludePattern *p = &x->patterns[i];

                if (p->dir_only && !is_dir)
                        continue;
                if (components_match(p->components, p->n_components, comp, n))
                        return true;
        }
        return false;
}

bool ckpt_exclude_match(const CkptExclude *x, const char *path, bool is_dir) {
        _cleanup_free_ const char **comp = NULL;
        _cleanup_free_ char *copy = NULL;
        size_t n = 0;

        if (!x || x->n_patterns == 0 || isempty(path))
                return false;
        copy = strdup(path);
        comp = calloc(strlen(path) / 2 + 1, sizeof(char *));
        if (!copy || !comp)
                return false;
        for (char *s = copy, *e; s; s = e) {
                e = strchr(s, '/');
                if (e)
                        *e++ = 0;
                if (!isempty(s))
                        comp[n++] = s;
        }
        for (size_t k = 1; k <= n; k++)
                if (exclude_match_components(x, comp, k, k < n || is_dir))
                        return true;
        return false;
}

/* ---- the walk */

typedef struct Walker {
        const char *root;
        const char *root_sep;   /* "/" unless root already ends with one */
        const CkptExclude *exclude;
        unsigned max_depth;
        size_t max_entries;
        CkptScan *scan;
        size_t n_allocated;
        /* The relative path of the entry at hand, and its components: the d_name of each level's
         * dirent, which stays valid while that level's DIR is not read again, i.e. while we are
         * below it. */
        char path[CKPT_SCAN_PATH_MAX + 1];
        size_t path_len;
        const char *comp[CKPT_SCAN_DEPTH_MAX + 1];
        char *error;
} Walker;

/* Records why the scan fails, naming root/path[/name]; why NULL: strerror(-r). Returns r. */
static int walker_fail(Walker *w, int r, const char *name, const char *why) {
        const char *sep1 = w->path_len > 0 ? w->root_sep : "";
        const char *sep2 = !name ? "" : w->path_len > 0 ? "/" : w->root_sep;
        int k;

        assert(r < 0);
        if (w->error)
                return r;
        errno = -r;
        if (why)
                k = asprintf(&w->error, "%s%s%s%s%s: %s", w->root, sep1, w->path, sep2, name ?: "", why);
        else
                k = asprintf(&w->error, "%s%s%s%s%s: %m", w->root, sep1, w->path, sep2, name ?: "");
        if (k < 0)
                w->error = NULL;
        return r;
}

static int walker_push(Walker *w, const char *name, unsigned depth) {
        size_t n = strlen(name), sep = w->path_len > 0;

        if (w->path_len + sep + n > CKPT_SCAN_PATH_MAX) {
                char why[64];

                (void) snprintf(why, sizeof(why), "path longer than %u bytes", CKPT_SCAN_PATH_MAX);
                return walker_fail(w, -ENAMETOOLONG, name, why);
        }
        if (sep)
                w->path[w->path_len++] = '/';
        memcpy(w->path + w->path_len, name, n + 1);
        w->path_len += n;
        w->comp[depth - 1] = name;
        return 0;
}

static void walker_pop(Walker *w, size_t len) {
        w->path_len = len;
        w->path[len] = 0;
}

static uint64_t timespec_ns(const struct timespec *ts) {
        if (ts->tv_sec < 0)
                return 0;
        return (uint64_t) ts->tv_sec * NSEC_PER_SEC + (uint64_t) ts->tv_nsec;
}

static int walker_add(Walker *w, const struct stat *st, CkptEntryType type, char *target) {
        _cleanup_free_ char *t = target, *p = NULL;
        CkptScan *s = w->scan;

        if (s->n_entries >= w->max_entries) {
                char why[64];

                (void) snprintf(why, sizeof(why), "more than %zu entries", w->max_entries);
                return walker_fail(w, -E2BIG, NULL, why);
        }
        if (s->n_entries == w->n_allocated) {
                size_t n = MIN(MAX(w->n_allocated * 2, (size_t) 64), w->max_entries);
                CkptEntry *e = reallocarray(s->entries, n, sizeof(CkptEntry));

                if (!e)
                        return -ENOMEM;
                s->entries = e;
                w->n_allocated = n;
        }
        p = strdup(w->path);
        if (!p)
                return -ENOMEM;
        s->entries[s->n_entries++] = (CkptEntry) {
                .path = TAKE_PTR(p),
                .type = type,
                .size = type == CKPT_ENTRY_FILE ? (uint64_t) st->st_size : t ? strlen(t) : 0,
                .mode = st->st_mode & 07777,
                .mtime_ns = timespec_ns(&st->st_mtim),
                .ctime_ns = timespec_ns(&st->st_ctim),
                .ino = st->st_ino,
                .dev = st->st_dev,
                .target = TAKE_PTR(t),
        };
        if (type == CKPT_ENTRY_FILE)
                s->total_bytes += (uint64_t) st->st_size;
        return 0;
}

static const char *special_kind(mode_t mode) {
        if (S_ISFIFO(mode))
                return "a fifo";
        if (S_ISSOCK(mode))
                return "a socket";
        if (S_ISCHR(mode))
                return "a character device";
        if (S_ISBLK(mode))
                return "a block device";
        return "of an unknown type";
}

static int walker_warn(Walker *w, mode_t mode) {
        CkptScan *s = w->scan;

        if (s->n_skipped++ >= CKPT_SCAN_WARNINGS_MAX)
                return 0;
        return strv_extendf(&s->warnings, "%s%s%s: skipped, %s", w->root, w->root_sep, w->path,
                            special_kind(mode));
}

static int walk_dir(Walker *w, int fd, unsigned depth);

static int walk_subdir(Walker *w, int dfd, const char *name, const struct stat *st, unsigned depth) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st2;
        int r;

        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0; /* removed since fstatat() */
                if (errno == ENOTDIR || errno == ELOOP)
                        return walker_fail(w, -EAGAIN, NULL, "replaced while being scanned");
                return walker_fail(w, -errno, NULL, NULL);
        }
        if (fstat(fd, &st2) < 0)
                return walker_fail(w, -errno, NULL, NULL);
        if (st2.st_dev != st->st_dev || st2.st_ino != st->st_ino)
                return walker_fail(w, -EAGAIN, NULL, "replaced while being scanned");
        r = walker_add(w, &st2, CKPT_ENTRY_DIR, NULL);
        if (r < 0)
                return r;
        return walk_dir(w, TAKE_FD(fd), depth);
}

static int walk_symlink(Walker *w, int dfd, const char *name, const struct stat *st) {
        _cleanup_free_ char *target = NULL;
        char buf[PATH_MAX + 1];
        ssize_t n;

        n = readlinkat(dfd, name, buf, sizeof(buf));
        if (n < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno == EINVAL)
                        return walker_fail(w, -EAGAIN, NULL, "replaced while being scanned");
                return walker_fail(w, -errno, NULL, NULL);
        }
        if ((size_t) n >= sizeof(buf))
                return walker_fail(w, -ENAMETOOLONG, NULL, "symlink target too long");
        buf[n] = 0;
        target = strdup(buf);
        if (!target)
                return -ENOMEM;
        return walker_add(w, st, CKPT_ENTRY_SYMLINK, TAKE_PTR(target));
}

static CkptEntryType entry_type_from_mode(mode_t mode) {
        if (S_ISREG(mode))
                return CKPT_ENTRY_FILE;
        if (S_ISDIR(mode))
                return CKPT_ENTRY_DIR;
        if (S_ISLNK(mode))
                return CKPT_ENTRY_SYMLINK;
        return _CKPT_ENTRY_TYPE_INVALID;
}

/* The name is pushed on w->path already; depth is its number of components. */
static int walk_entry(Walker *w, int dfd, const char *name, unsigned depth) {
        CkptEntryType type;
        struct stat st;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 0; /* removed since readdir() */
                return walker_fail(w, -errno, NULL, NULL);
        }
        type = entry_type_from_mode(st.st_mode);
        if (w->exclude && exclude_match_components(w->exclude, w->comp, depth, type == CKPT_ENTRY_DIR))
                return 0;
        if (type < 0)
                return walker_warn(w, st.st_mode);
        if (depth > w->max_depth) {
                char why[64];

                (void) snprintf(why, sizeof(why), "deeper than %u levels", w->max_depth);
                return walker_fail(w, -ELOOP, NULL, why);
        }
        switch (type) {
        case CKPT_ENTRY_DIR:
                return walk_subdir(w, dfd, name, &st, depth);
        case CKPT_ENTRY_SYMLINK:
                return walk_symlink(w, dfd, name, &st);
        default:
                return walker_add(w, &st, type, NULL);
        }
}

/* Takes fd; depth is the directory's own number of components (the root's is 0). */
static int walk_dir(Walker *w, int fd, unsigned depth) {
        _cleanup_(closedirp) DIR *d = NULL;
        int r;

        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                safe_close(fd);
                return walker_fail(w, r, NULL, NULL);
        }
        for (;;) {
                size_t saved = w->path_len;
                struct dirent *de;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return walker_fail(w, -errno, NULL, NULL);
                        return 0;
                }
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (depth == 0 && streq(de->d_name, TASK_COMMIT_FILE_NAME))
                        continue;
                r = walker_push(w, de->d_name, depth + 1);
                if (r < 0)
                        return r;
                r = walk_entry(w, dirfd(d), de->d_name, depth + 1);
                walker_pop(w, saved);
                if (r < 0)
                        return r;
        }
}

static int entry_compare(const void *a, const void *b) {
        return strcmp(((const CkptEntry *) a)->path, ((const CkptEntry *) b)->path);
}

static int scan_root(Walker *w) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        /* The root alone is opened by path and may be a symlink: checkpoint_dir is the user's. */
        fd = open(w->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0)
                return walker_fail(w, -errno, NULL, NULL);
        w->scan->root_mtime_ns = timespec_ns(&st.st_mtim);
        w->scan->root_ctime_ns = timespec_ns(&st.st_ctim);
        return walk_dir(w, TAKE_FD(fd), 0);
}

int ckpt_scan(const char *root, const CkptScanOptions *opts, CkptScan **ret, char **ret_error) {
        _cleanup_(ckpt_scan_freep) CkptScan *s = NULL;
        struct timespec now;
        Walker w;
        int r;

        assert(root);
        assert(ret);

        s = calloc(1, sizeof(CkptScan));
        if (!s)
                return -ENOMEM;
        /* The coarse clock is the one the kernel stamps files with: a file written after this
         * moment never carries an older mtime (the stat cache's racy-clean rule relies on it). */
        if (clock_gettime(CLOCK_REALTIME_COARSE, &now) < 0)
                return -errno;
        s->started_ns = timespec_ns(&now);

        w = (Walker) {
                .root = root,
                .root_sep = !isempty(root) && root[strlen(root) - 1] == '/' ? "" : "/",
                .exclude = opts ? opts->exclude : NULL,
                .max_depth = opts && opts->max_depth > 0 ? MIN(opts->max_depth, CKPT_SCAN_DEPTH_MAX)
                                                         : CKPT_SCAN_DEPTH_MAX,
                .max_entries = opts && opts->max_entries > 0
                                       ? MIN(opts->max_entries, (size_t) CKPT_SCAN_ENTRIES_MAX)
                                       : CKPT_SCAN_ENTRIES_MAX,
                .scan = s,
        };
        r = scan_root(&w);
        if (r < 0) {
                if (!w.error)
                        (void) walker_fail(&w, r, NULL, NULL);
                if (ret_error)
                        *ret_error = TAKE_PTR(w.error);
                free(w.error);
                return r;
        }
        if (s->n_entries > 1)
                qsort(s->entries, s->n_entries, sizeof(CkptEntry), entry_compare);
        *ret = TAKE_PTR(s);
        return 0;
}

CkptScan *ckpt_scan_free(CkptScan *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_entries; i++) {
                free(s->entries[i].path);
                free(s->entries[i].target);
        }
        free(s->entries);
        strv_free(s->warnings);
        return mfree(s);
}

const CkptEntry *ckpt_scan_find(const CkptScan *s, const char *path) {
        CkptEntry key = { .path = (char *) path };

        assert(s);
        if (!path || s->n_entries == 0)
                return NULL;
        return bsearch(&key, s->entries, s->n_entries, sizeof(CkptEntry), entry_compare);
}

uint64_t ckpt_scan_quiet_since_ns(const CkptScan *s) {
        uint64_t newest;

        assert(s);
        newest = MAX(s->root_mtime_ns, s->root_ctime_ns);
        for (size_t i = 0; i < s->n_entries; i++)
                newest = MAX(newest, MAX(s->entries[i].mtime_ns, s->entries[i].ctime_ns));
        return newest;
}
