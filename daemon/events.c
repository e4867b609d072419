/* SPDX-License-Identifier: MIT */
#include <syslog.h>

#include "events.h"
#include "macro.h"

static const EventInfo event_table[_EVENT_MAX] = {
        [EVENT_STARTED] = { "started", "2b37ca296ce94d6a8f987771279e06d2", LOG_INFO },
        [EVENT_PHASE] = { "phase", "d9620c284f404a8eaec20af8f5bcdf50", LOG_INFO },
        [EVENT_RESTORE_BEGIN] = { "restore-begin", "04ea78edbd4d4794bfa1c67d456bc2f1", LOG_INFO },
        [EVENT_RESTORE_DONE] = { "restore-done", "0a24b3798be748d792081da9d47e7af5", LOG_INFO },
        [EVENT_RESTORE_FAILED] = { "restore-failed", "7836cd777c3e46c98b91db16727dfc68", LOG_ERR },
        [EVENT_COMPLETION_FOUND] = { "completion-found", "f6a817943ade41448c039fe603162a1f", LOG_NOTICE },
        [EVENT_IMAGE_PULL] = { "image-pull", "c0a47677234446a2b003dda13d17ed40", LOG_INFO },
        [EVENT_TASK_STARTED] = { "task-started", "992ac969ca1d46be976ec9d7e32eaa69", LOG_INFO },
        [EVENT_TASK_EXITED] = { "task-exited", "47c95668a8934dbd956166099eb2be10", LOG_NOTICE },
        [EVENT_TASK_RESTART] = { "task-restart", "9db297b630894e128e1330620ae5f5af", LOG_WARNING },
        [EVENT_NOTICE] = { "notice", "3ec690969d344c529dc84555f534983b", LOG_WARNING },
        [EVENT_NOTICE_CANCELLED] = { "notice-cancelled", "3dd93bc5690049d78546a98722d60174", LOG_NOTICE },
        [EVENT_CHECKPOINT_REQUESTED] = { "checkpoint-requested", "480b8702905b442abb01e03af3d1c4db", LOG_INFO },
        [EVENT_CHECKPOINT_SETTLED] = { "checkpoint-settled", "391175ca5c874b4899cd7e3742cb7793", LOG_INFO },
        [EVENT_DEADLINE_RISK] = { "deadline-risk", "184f1154cbe24d2789118844cb3facfc", LOG_WARNING },
        [EVENT_SNAPSHOT_COMMITTED] = { "snapshot-committed", "7f093f15804742b285180f127ad7df22", LOG_INFO },
        [EVENT_SNAPSHOT_FAILED] = { "snapshot-failed", "6bfcdd754fe244e5b8417cded9078c94", LOG_ERR },
        [EVENT_NOTICE_ACKNOWLEDGED] = { "notice-acknowledged", "49147bc096a54cc1b81a386e822debd4", LOG_INFO },
        [EVENT_TRANSFER_PROGRESS] = { "transfer-progress", "b1c2799a84ca43379b920b6d6d411b19", LOG_INFO },
        [EVENT_COMPLETED] = { "completed", "1a2c4fe5ebf14ef1acb506490dc0f28f", LOG_NOTICE },
        [EVENT_POWEROFF] = { "poweroff", "d6ccf987f2454c7f95dae6051d8a0d0e", LOG_NOTICE },
        [EVENT_STOPPING] = { "stopping", "757af651016b4ca7a6510d6c86783391", LOG_INFO },
        [EVENT_ERROR] = { "error", "14d4ca9414194c3797b56ffaf8512ed2", LOG_ERR },
};

const EventInfo *event_info(Event e) {
        if (e < 0 || e >= _EVENT_MAX)
                return NULL;
        return &event_table[e];
}

const char *event_to_string(Event e) {
        const EventInfo *i = event_info(e);

        return i ? i->name : NULL;
}

Event event_from_string(const char *s) {
        if (!s)
                return _EVENT_INVALID;
        for (Event e = 0; e < _EVENT_MAX; e++)
                if (streq(event_table[e].name, s))
                        return e;
        return _EVENT_INVALID;
}
