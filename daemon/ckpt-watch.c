/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "ckpt-scan.h"
#include "ckpt-watch.h"
#include "task.h"

/* IN_MODIFY too: a writer that keeps one file open for seconds produces nothing else until it
 * closes it. Identical consecutive events are merged by the kernel, so this stays cheap. */
#define CKPT_WATCH_MASK                                                                            \
        (IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | \
         IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define CKPT_WATCH_RETRY_USEC (1 * USEC_PER_SEC)   /* looking for a removed directory to come back */
#define CKPT_WATCH_ACCURACY_USEC USEC_PER_MSEC
#define CKPT_WATCH_BUFFER_SIZE (16U * 1024U)       /* holds at least one event with a NAME_MAX name */

DEFINE_CLEANUP_FUNC(DIR *, closedir);

typedef struct WatchDir {
        int wd;
        int parent;             /* wd of the parent directory; -1 for the top and when detached */
        char *name;             /* name in the parent; NULL for the top and when detached */
        bool detached;          /* moved away from its parent, not (yet) seen arriving elsewhere */
        bool doomed;            /* scratch mark of watch_remove_subtree() */
        unsigned gen;           /* walk that last saw it (ckpt_watch_resync()) */
} WatchDir;

struct CkptWatch {
        sd_event *event;
        char *dir;
        usec_t settle_usec;
        CkptSettled settled;
        CkptWatchError error;
        void *userdata;

        int fd;                 /* inotify */
        char *commit_path;      /* dir/TASK_COMMIT_FILE_NAME */
        int top_wd;             /* -1 while the directory is gone */
        sd_event_source *io;
        sd_event_source *timer; /* settle (CLOCK_BOOTTIME) */
        sd_event_source *retry; /* re-adding a removed top directory */

        WatchDir *dirs;         /* sorted by wd */
        size_t n_dirs;
        size_t n_detached;
        unsigned gen;
        bool limit_reported;
        int retry_error;

        bool dirty;
        bool silent;            /* draining for ckpt_watch_reset(): bookkeeping only */
        bool resync;            /* events were lost: walk the tree again */
        bool commit_pending;
        usec_t commit_changed_at;
        usec_t last_change;      /* CLOCK_REALTIME */
        usec_t last_change_boot; /* CLOCK_BOOTTIME */
        usec_t now_real, now_boot; /* of the event loop iteration being dispatched */
};

_printf_(3, 4) static void ckpt_watch_report(CkptWatch *w, int error, const char *format, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;
        int r;

        if (!w->error)
                return;
        va_start(ap, format);
        r = vasprintf(&m, format, ap);
        va_end(ap);
        if (r >= 0)
                w->error(w, error, m, w->userdata);
}

/* ---- the table of watched directories */

static int watch_cmp(const void *a, const void *b) {
        int x = *(const int *) a, y = ((const WatchDir *) b)->wd;

        return (x > y) - (x < y);
}

static WatchDir *watch_find(CkptWatch *w, int wd) {
        if (w->n_dirs == 0)
                return NULL;    /* bsearch() wants a non-NULL array even when empty */
        return bsearch(&wd, w->dirs, w->n_dirs, sizeof(WatchDir), watch_cmp);
}

static int watch_insert(CkptWatch *w, int wd) {
        WatchDir *n;
        size_t i = w->n_dirs;

        n = reallocarray(w->dirs, w->n_dirs + 1, sizeof(WatchDir));
        if (!n)
                return -ENOMEM;
        w->dirs = n;
        /* wds grow (the kernel allocates them cyclically), so this is nearly always an append. */
        while (i > 0 && w->dirs[i - 1].wd > wd)
                i--;
        memmove(w->dirs + i + 1, w->dirs + i, (w->n_dirs - i) * sizeof(WatchDir));
        w->dirs[i] = (WatchDir) { .wd = wd, .parent = -1 };
        w->n_dirs++;
        return 0;
}

static bool watch_is_below(CkptWatch *w, const WatchDir *d, int ancestor) {
        for (unsigned i = 0; d && i <= CKPT_SCAN_DEPTH_MAX + 1; i++) {
                if (d->wd == ancestor)
                        return true;
                if (d->parent < 0)
                        return false;
                d = watch_find(w, d->parent);
        }
        return false;
}

/* Forgets wd and every directory below it, dropping their kernel watches; rm_root: wd's too
 * (false when the kernel dropped it already: IN_IGNORED). */
static void watch_remove_subtree(CkptWatch *w, int wd, bool rm_root) {
        size_t j = 0;

        for (size_t i = 0; i < w->n_dirs; i++)
                w->dirs[i].doomed = watch_is_below(w, &w->dirs[i], wd);
        for (size_t i = 0; i < w->n_dirs; i++) {
                WatchDir *d = &w->dirs[i];

                if (!d->doomed) {
                        w->dirs[j++] = *d;
                        continue;
                }
                if (rm_root || d->wd != wd)
                        (void) inotify_rm_watch(w->fd, d->wd);
                if (d->detached)
                        w->n_detached--;
                free(d->name);
        }
        w->n_dirs = j;
        if (w->n_dirs < CKPT_WATCH_MAX_DIRS)
                w->limit_reported = false;
}

static void watch_drop_all(CkptWatch *w) {
        for (size_t i = 0; i < w->n_dirs; i++) {
                (void) inotify_rm_watch(w->fd, w->dirs[i].wd);
                free(w->dirs[i].name);
        }
        w->n_dirs = w->n_detached = 0;
        w->limit_reported = false;
        w->top_wd = -1;
}

/* The path of a watched directory, from the parent links. -ESTALE when it hangs off a detached
 * directory (its place is unknown until its move is seen completed). */
static int watch_path(CkptWatch *w, int wd, char **ret, unsigned *ret_depth) {
        const char *names[CKPT_SCAN_DEPTH_MAX + 1];
        unsigned depth = 0;
        size_t len = strlen(w->dir);
        const WatchDir *d = watch_find(w, wd);
        char *p, *q;

        for (; d && d->wd != w->top_wd; d = watch_find(w, d->parent)) {
                if (d->parent < 0 || depth >= ELEMENTSOF(names))
                        return -ESTALE;
                names[depth++] = d->name;
                len += 1 + strlen(d->name);
        }
        if (!d)
                return -ESTALE;
        if (len >= PATH_MAX)
                return -ENAMETOOLONG;
        p = malloc(len + 1);
        if (!p)
                return -ENOMEM;
        q = stpcpy(p, w->dir);
        for (unsigned i = depth; i > 0; i--) {
                *q++ = '/';
                q = stpcpy(q, names[i - 1]);
        }
        *ret = p;
        *ret_depth = depth;
        return 0;
}

static char *path_join(const char *a, const char *b) {
        char *p;

        if (asprintf(&p, "%s%s%s", a, streq(a, "/") ? "" : "/", b) < 0)
                return NULL;
        return p;
}

/* ---- walking */

/* Records wd as the directory name in parent (-1: the top). */
static int watch_attach(CkptWatch *w, int wd, int parent, const char *name) {
        _cleanup_free_ char *n = NULL;
        WatchDir *d;
        int r;

        if (name) {
                n = strdup(name);
                if (!n)
                        return -ENOMEM;
        }
        d = watch_find(w, wd);
        if (!d) {
                r = watch_insert(w, wd);
                if (r < 0)
                        return r;
                d = watch_find(w, wd);
        }
        if (d->detached)
                w->n_detached--;
        free(d->name);
        d->name = TAKE_PTR(n);
        d->parent = parent;
        d->detached = false;
        d->gen = w->gen;
        return 0;
}

static int ckpt_watch_add_one(CkptWatch *w, int parent, const char *name, const char *path) {
        uint32_t mask = CKPT_WATCH_MASK | (parent >= 0 ? IN_DONT_FOLLOW : 0);
        int wd, r;

        wd = inotify_add_watch(w->fd, path, mask);
        if (wd < 0) {
                r = negative_errno();
                if (r == -ENOSPC && !w->limit_reported) {
                        w->limit_reported = true;
                        ckpt_watch_report(w, r, "Cannot watch %s: the system's inotify watch limit "
                                          "(fs.inotify.max_user_watches) is reached", path);
                }
                return r;
        }
        if (!watch_find(w, wd) && w->n_dirs >= CKPT_WATCH_MAX_DIRS) {
                (void) inotify_rm_watch(w->fd, wd);
                if (!w->limit_reported) {
                        w->limit_reported = true;
                        ckpt_watch_report(w, -ENOSPC, "Not watching %s: %u directories are watched "
                                          "already, changes below it are not seen", path, CKPT_WATCH_MAX_DIRS);
                }
                return -ENOSPC;
        }
        r = watch_attach(w, wd, parent, name);
        if (r < 0) {
                (void) inotify_rm_watch(w->fd, wd);
                return r;
        }
        if (parent < 0)
                w->top_wd = wd;
        return wd;
}

/* Watches path, then lists it for subdirectories (watch first: nothing created in between is
 * missed). Directories that vanish meanwhile are skipped. depth: 0 for the top. */
static int ckpt_watch_add_tree(CkptWatch *w, int parent, const char *name, const char *path, unsigned depth) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int wd, fd;

        if (depth > CKPT_SCAN_DEPTH_MAX)
                return 0;       /* ckpt-scan refuses such a tree anyway, with a precise error */
        wd = ckpt_watch_add_one(w, parent, name, path);
        if (wd < 0) {
                if (parent < 0)
                        return wd;
                /* Gone again or replaced by a non-directory: its parent's events say so. */
                if (wd != -ENOENT && wd != -ENOTDIR && wd != -ENOSPC)
                        ckpt_watch_report(w, wd, "Cannot watch %s, changes below it are not seen", path);
                return 0;
        }

        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | (parent >= 0 ? O_NOFOLLOW : 0));
        if (fd < 0)
                return 0;       /* gone again, or unreadable: its own watch still reports changes */
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -ENOMEM;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *child = NULL;
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_UNKNOWN) {
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                                continue;
                } else if (de->d_type != DT_DIR)
                        continue;
                child = path_join(path, de->d_name);
                if (!child)
                        return -ENOMEM;
                (void) ckpt_watch_add_tree(w, wd, de->d_name, child, depth + 1);
        }
        return 0;
}

static void ckpt_watch_add_child(CkptWatch *w, int parent, const char *name) {
        _cleanup_free_ char *dir = NULL, *path = NULL;
        unsigned depth;

        if (watch_path(w, parent, &dir, &depth) < 0)
                return;         /* below a directory in mid-move: its arrival walks it */
        path = path_join(dir, name);
        if (!path) {
                ckpt_watch_report(w, -ENOMEM, "Cannot watch %s/%s", dir, name);
                return;
        }
        (void) ckpt_watch_add_tree(w, parent, name, path, depth + 1);
}

/* A directory moved away from parent: where to is known only if its IN_MOVED_TO follows (then
 * ckpt_watch_add_child() finds the same wd and attaches it there). Returns its wd or -1. */
static int ckpt_watch_detach(CkptWatch *w, int parent, const char *name) {
        for (size_t i = 0; i < w->n_dirs; i++) {
                WatchDir *d = &w->dirs[i];

                if (d->parent != parent || d->detached || !streq(d->name, name))
                        continue;
                d->name = mfree(d->name);
                d->parent = -1;
                d->detached = true;
                w->n_detached++;
                return d->wd;
        }
        return -1;
}

/* Detached directories that did not arrive anywhere in the tree left it: stop watching them.
 * keep: one detached by the last event read, whose IN_MOVED_TO may come with the next read. */
static void ckpt_watch_sweep(CkptWatch *w, int keep) {
        size_t i = 0;

        while (w->n_detached > 0 && i < w->n_dirs) {
                if (w->dirs[i].detached && w->dirs[i].wd != keep) {
                        watch_remove_subtree(w, w->dirs[i].wd, true);
                        i = 0;
                } else
                        i++;
        }
}

/* ---- changes, the commit file and the top directory */

static void ckpt_watch_arm(CkptWatch *w) {
        int enabled = SD_EVENT_OFF, r;

        (void) sd_event_source_get_enabled(w->timer, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;         /* on expiry it re-arms itself for what is left */
        r = sd_event_source_set_time(w->timer, w->last_change_boot + w->settle_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
        if (r < 0)
                ckpt_watch_report(w, r, "Failed to arm the settle timer of %s", w->dir);
}

static void ckpt_watch_mark_change(CkptWatch *w) {
        if (w->silent)
                return;
        w->dirty = true;
        w->last_change = w->now_real;
        w->last_change_boot = w->now_boot;
        ckpt_watch_arm(w);
}

static void ckpt_watch_stamp(CkptWatch *w) {
        if (sd_event_now(w->event, CLOCK_REALTIME, &w->now_real) < 0)
                w->now_real = now_usec(CLOCK_REALTIME);
        if (sd_event_now(w->event, CLOCK_BOOTTIME, &w->now_boot) < 0)
                w->now_boot = now_usec(CLOCK_BOOTTIME);
}

/* The commit file exists (or an event says it did): remove it; when it was there, that is a
 * commit. ENOENT means an earlier event of the same file was handled already. */
static void ckpt_watch_commit(CkptWatch *w, bool created) {
        /* By path: an fd kept open on dir would delay its IN_DELETE_SELF/IN_IGNORED until closed. */
        if (w->top_wd < 0)
                return;
        if (unlinkat(AT_FDCWD, w->commit_path, 0) < 0) {
                if (errno == ENOENT)
                        return;
                ckpt_watch_report(w, negative_errno(), "Failed to remove the commit file %s", w->commit_path);
                if (!created)
                        return;
        }
        if (w->silent)
                return;
        if (w->dirty)
                w->commit_changed_at = w->last_change;
        else if (!w->commit_pending)
                w->commit_changed_at = 0;
        w->commit_pending = true;
        w->dirty = false;
}

static int ckpt_watch_add_top(CkptWatch *w) {
        int r;

        r = ckpt_watch_add_tree(w, -1, NULL, w->dir, 0);
        if (r < 0)
                return r;
        /* A commit file created while nobody watched would hide the next one's IN_CREATE. */
        ckpt_watch_commit(w, true);
        return 0;
}

static int ckpt_watch_on_retry(sd_event_source *s, uint64_t usec, void *userdata);

static void ckpt_watch_try_top(CkptWatch *w) {
        int r;

        r = ckpt_watch_add_top(w);
        if (r >= 0) {
                w->retry_error = 0;
                ckpt_watch_mark_change(w);      /* whatever the new directory holds is new */
                return;
        }
        if (r != -ENOENT && r != w->retry_error)
                ckpt_watch_report(w, r, "Cannot watch %s, retrying", w->dir);
        w->retry_error = r;
        if (w->retry)
                r = sd_event_source_set_time_relative(w->retry, CKPT_WATCH_RETRY_USEC);
        else
                r = sd_event_add_time_relative(w->event, &w->retry, CLOCK_BOOTTIME, CKPT_WATCH_RETRY_USEC,
                                               100 * USEC_PER_MSEC, ckpt_watch_on_retry, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->retry, SD_EVENT_ONESHOT);
        if (r < 0)
                ckpt_watch_report(w, r, "Failed to arm the retry timer of %s, not watching it any more", w->dir);
}

/* The top directory was removed or moved away: our watches follow what is no longer dir. */
static void ckpt_watch_top_lost(CkptWatch *w, const char *what) {
        watch_drop_all(w);
        ckpt_watch_mark_change(w);
        ckpt_watch_report(w, -ENOENT, "Checkpoint directory %s was %s, watching it again once it is back",
                          w->dir, what);
        ckpt_watch_try_top(w);
}

/* Events were lost: walk the tree again (re-attaching what moved), forget what was not found,
 * and look for a commit file. */
static void ckpt_watch_resync(CkptWatch *w) {
        size_t i = 0;
        int r;

        w->gen++;
        r = ckpt_watch_add_top(w);
        if (r < 0) {
                ckpt_watch_top_lost(w, r == -ENOENT ? "removed" : "made unreadable");
                return;
        }
        while (i < w->n_dirs) {
                if (w->dirs[i].gen != w->gen) {
                        watch_remove_subtree(w, w->dirs[i].wd, true);
                        i = 0;
                } else
                        i++;
        }
}

/* ---- events */

/* Returns the wd of a directory this event detached, else -1. */
static int ckpt_watch_handle_event(CkptWatch *w, const struct inotify_event *ev) {
        const char *name = ev->len > 0 ? ev->name : NULL;

        if (ev->mask & IN_Q_OVERFLOW) {
                w->resync = true;
                ckpt_watch_mark_change(w);
                return -1;
        }
        if (!watch_find(w, ev->wd))
                return -1;      /* a watch dropped already: not ours any more */
        if (ev->mask & IN_IGNORED) {
                if (ev->wd == w->top_wd)
                        ckpt_watch_top_lost(w, "removed");
                else
                        watch_remove_subtree(w, ev->wd, false);
                return -1;
        }
        if (ev->mask & IN_MOVE_SELF && ev->wd == w->top_wd) {
                ckpt_watch_top_lost(w, "moved away");
                return -1;
        }
        if (ev->mask & (IN_MOVE_SELF | IN_DELETE_SELF))
                return -1;      /* the parent's event is the change; IN_IGNORED follows a deletion */
        if (name && ev->wd == w->top_wd && streq(name, TASK_COMMIT_FILE_NAME)) {
                if (!(ev->mask & (IN_DELETE | IN_MOVED_FROM)))
                        ckpt_watch_commit(w, ev->mask & (IN_CREATE | IN_MOVED_TO));
                return -1;
        }
        ckpt_watch_mark_change(w);
        if (!name || !(ev->mask & IN_ISDIR))
                return -1;
        if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                ckpt_watch_add_child(w, ev->wd, name);
        else if (ev->mask & IN_MOVED_FROM)
                return ckpt_watch_detach(w, ev->wd, name);
        return -1;
}

static void ckpt_watch_process(CkptWatch *w, const uint8_t *buf, size_t n) {
        int detached = -1;

        for (size_t off = 0; off + sizeof(struct inotify_event) <= n;) {
                const struct inotify_event *ev = (const struct inotify_event *) (buf + off);

                off += sizeof(struct inotify_event) + ev->len;
                detached = ckpt_watch_handle_event(w, ev);
        }
        ckpt_watch_sweep(w, detached);
        if (w->resync) {
                w->resync = false;
                ckpt_watch_resync(w);
        }
}

/* Reports a commit seen by this dispatch. The callback may free w: callers return right after. */
static void ckpt_watch_deliver_commit(CkptWatch *w) {
        w->commit_pending = false;
        if (!w->dirty)
                (void) sd_event_source_set_enabled(w->timer, SD_EVENT_OFF);
        w->settled(w, CKPT_SETTLE_COMMIT_FILE, w->commit_changed_at, w->userdata);
}

static int ckpt_watch_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        uint8_t buf[CKPT_WATCH_BUFFER_SIZE] __attribute__((aligned(__alignof__(struct inotify_event))));
        CkptWatch *w = userdata;
        ssize_t n;

        /* One read per dispatch; the source is level-triggered and other sources get their turn. */
        n = read(w->fd, buf, sizeof(buf));
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                ckpt_watch_report(w, negative_errno(), "Failed to read inotify events of %s, not watching it any more",
                                  w->dir);
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }
        ckpt_watch_stamp(w);
        ckpt_watch_process(w, buf, (size_t) n);
        if (w->commit_pending)
                ckpt_watch_deliver_commit(w);
        return 0;
}

static int ckpt_watch_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CkptWatch *w = userdata;

        ckpt_watch_stamp(w);
        if (w->commit_pending) {
                if (w->dirty)
                        ckpt_watch_arm(w);
                ckpt_watch_deliver_commit(w);
                return 0;
        }
        if (!w->dirty)
                return 0;
        if (w->now_boot < w->last_change_boot + w->settle_usec) {
                ckpt_watch_arm(w);      /* changes came since it was armed: wait for the rest */
                return 0;
        }
        w->dirty = false;
        w->settled(w, CKPT_SETTLE_QUIET, w->last_change, w->userdata);
        return 0;
}

static int ckpt_watch_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        CkptWatch *w = userdata;

        ckpt_watch_stamp(w);
        ckpt_watch_try_top(w);
        if (w->commit_pending)
                ckpt_watch_deliver_commit(w);
        return 0;
}

/* ---- the object */

CkptWatch *ckpt_watch_free(CkptWatch *w) {
        if (!w)
                return NULL;
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->timer);
        sd_event_source_disable_unref(w->retry);
        for (size_t i = 0; i < w->n_dirs; i++)
                free(w->dirs[i].name);
        free(w->dirs);
        safe_close(w->fd);
        sd_event_unref(w->event);
        free(w->commit_path);
        free(w->dir);
        return mfree(w);
}

int ckpt_watch_new(CkptWatch **ret, const CkptWatchParams *p) {
        _cleanup_(ckpt_watch_freep) CkptWatch *w = NULL;
        size_t len;
        int r;

        assert(ret);
        assert(p);
        assert(p->event);
        assert(p->dir && p->dir[0] == '/');
        assert(p->settle_usec > 0);
        assert(p->settled);

        w = calloc(1, sizeof(CkptWatch));
        if (!w)
                return -ENOMEM;
        *w = (CkptWatch) {
                .event = sd_event_ref(p->event),
                .settle_usec = p->settle_usec,
                .settled = p->settled,
                .error = p->error,
                .userdata = p->userdata,
                .fd = -EBADF,
                .top_wd = -1,
        };
        w->dir = strdup(p->dir);
        if (!w->dir)
                return -ENOMEM;
        for (len = strlen(w->dir); len > 1 && w->dir[len - 1] == '/'; len--)
                w->dir[len - 1] = 0;
        w->commit_path = path_join(w->dir, TASK_COMMIT_FILE_NAME);
        if (!w->commit_path)
                return -ENOMEM;

        w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->fd < 0)
                return negative_errno();
        r = sd_event_add_io(w->event, &w->io, w->fd, EPOLLIN, ckpt_watch_on_io, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->io, "ckpt-watch-io");
        r = sd_event_add_time(w->event, &w->timer, CLOCK_BOOTTIME, 1, CKPT_WATCH_ACCURACY_USEC,
                              ckpt_watch_on_timer, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->timer, "ckpt-watch-settle");

        r = ckpt_watch_add_top(w);
        if (r < 0)
                return r;
        /* A commit file left from before is reported on the first iteration (time 1: long past). */
        (void) sd_event_source_set_enabled(w->timer, w->commit_pending ? SD_EVENT_ONESHOT : SD_EVENT_OFF);

        *ret = TAKE_PTR(w);
        return 0;
}

bool ckpt_watch_dirty(const CkptWatch *w) {
        return w && w->dirty;
}

usec_t ckpt_watch_last_change(const CkptWatch *w) {
        return w ? w->last_change : 0;
}

void ckpt_watch_reset(CkptWatch *w) {
        uint8_t buf[CKPT_WATCH_BUFFER_SIZE] __attribute__((aligned(__alignof__(struct inotify_event))));
        int queued = 0;

        assert(w);

        /* What is queued now happened before this call: read exactly that, for the bookkeeping
         * (watches, removing a commit file) but not as changes. */
        if (ioctl(w->fd, FIONREAD, &queued) < 0)
                queued = 0;
        w->silent = true;
        while (queued > 0) {
                ssize_t n = read(w->fd, buf, MIN(sizeof(buf), (size_t) queued));

                if (n <= 0)
                        break;
                ckpt_watch_process(w, buf, (size_t) n);
                queued -= (int) n;
        }
        w->silent = false;
        w->dirty = false;
        w->commit_pending = false;
        (void) sd_event_source_set_enabled(w->timer, SD_EVENT_OFF);
}
