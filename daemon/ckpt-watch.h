/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

/* Watches one task's checkpoint directory (recursively, with inotify) and says when a checkpoint
 * is "settled": settle_usec of quiet after the last change, or at once when the task creates the
 * commit file (TASK_COMMIT_FILE_NAME, ".trainsupd-commit", at the top of the directory). The
 * commit file itself is removed by the watcher when it reports the settle (so the next one can be
 * created again), and changes to it never count as checkpoint writes. A commit file that exists
 * when the watcher starts (created while nobody watched) is removed and reported as a commit on
 * the first loop iteration; one queued before ckpt_watch_reset() is removed and not reported.
 *
 * Changes are: a file written to (IN_MODIFY: a writer may keep one file open for seconds),
 * closed after writing, created, deleted, moved in/out/within, attributes changed; a new
 * subdirectory is watched as it appears (and what was written into it before its watch was added
 * counts as a change: its creation is one). A directory renamed within the tree keeps its watches;
 * one moved out of the tree is no longer watched. A queue overflow (IN_Q_OVERFLOW) counts as a
 * change, and the tree is walked again to pick up what the lost events would have said
 * (directories created or moved, a commit file). Symbolic links are not followed, except dir
 * itself. Directories more than CKPT_SCAN_DEPTH_MAX levels down are not watched.
 *
 * The top directory removed or moved away: reported through the error callback (-ENOENT), counts
 * as a change, and the watcher looks for dir again, at once and then every second; when it is
 * back, its whole tree is watched again and that counts as a change too.
 *
 * Settles: at most one per burst of changes (none until the next change); changed_at tells which
 * burst. The settled callback is always the last thing the watcher does in a dispatch, so it may
 * call ckpt_watch_reset() or ckpt_watch_free(). The error callback must only log: it may run in
 * the middle of a dispatch, or inside ckpt_watch_new() (with the watcher not yet returned).
 *
 * The watcher never reads file contents and never blocks: adding watches for an existing tree is
 * one walk at start (bounded by CKPT_WATCH_MAX_DIRS directories, beyond which it reports an error
 * (-ENOSPC, once) and keeps watching what it has; the same for the system's inotify watch
 * limit), and one walk of each directory that appears. */

#define CKPT_WATCH_MAX_DIRS 4096U

typedef struct CkptWatch CkptWatch;

typedef enum CkptSettleReason {
        CKPT_SETTLE_QUIET,      /* settle_usec without a change */
        CKPT_SETTLE_COMMIT_FILE,/* the task created the commit file */
} CkptSettleReason;

/* changed_at: CLOCK_REALTIME of the last change before the settle (0 when only the commit file
 * was created). */
typedef void (*CkptSettled)(CkptWatch *w, CkptSettleReason reason, usec_t changed_at, void *userdata);
/* A problem worth one log line (watch limit reached, directory removed and re-created, ...). */
typedef void (*CkptWatchError)(CkptWatch *w, int error, const char *message, void *userdata);

typedef struct CkptWatchParams {
        sd_event *event;
        const char *dir;        /* exists when started; absolute */
        usec_t settle_usec;     /* > 0 */
        CkptSettled settled;
        CkptWatchError error;   /* optional */
        void *userdata;
} CkptWatchParams;

int ckpt_watch_new(CkptWatch **ret, const CkptWatchParams *p);
CkptWatch *ckpt_watch_free(CkptWatch *w);
DEFINE_CLEANUP_FUNC(CkptWatch *, ckpt_watch_free);

/* True when a change has been seen and not yet reported as settled. */
bool ckpt_watch_dirty(const CkptWatch *w);
/* CLOCK_REALTIME of the last change seen (0: none since start). */
usec_t ckpt_watch_last_change(const CkptWatch *w);
/* Counts changes only from now on: a settle is reported only after a change (or the commit file)
 * that happens after this call. Used after a checkpoint request so that an old quiet period is
 * not taken for the new checkpoint. Events already queued are read at once (for the watches and
 * the commit file) without counting; ckpt_watch_last_change() keeps its value. */
void ckpt_watch_reset(CkptWatch *w);
