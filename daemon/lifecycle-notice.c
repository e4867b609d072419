/* SPDX-License-Identifier: MIT */
/* Checkpoint rounds (ckpt-round.c) started by notices, the system's shutdown and the control
 * socket (docs/lifecycle.md).
 *
 * One round handles notices: an imminent notice (or the shutdown) checkpoints, commits and stops
 * the tasks (phase draining, then drained); an advisory one checkpoints and syncs without
 * stopping. A second notice while it runs joins it (stop if imminent, the earlier deadline). On
 * Azure the imminent event is acknowledged once the round is through (every task's snapshot
 * committed and the tasks stopped), which lets the platform go ahead early. */
#include <inttypes.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"
#include "manager.h"

/* Without a deadline from the platform: how long an imminent notice is assumed to leave. */
#define NOTICE_DEFAULT_WINDOW_USEC (30 * USEC_PER_SEC)
/* logind waits this long for delay inhibitors (units/logind-trainsupd.conf raises it to this). */
#define SHUTDOWN_LOGIND_WINDOW_USEC (25 * USEC_PER_SEC)
/* SIGTERM while the system stops: the unit's TimeoutStopSec is 100 s; keep a margin. */
#define SHUTDOWN_SIGTERM_WINDOW_USEC (90 * USEC_PER_SEC)

static bool lifecycle_job_over(const Manager *m) {
        return m->step == LIFECYCLE_END || m->step == LIFECYCLE_MARK || m->step == LIFECYCLE_FINAL_SYNC ||
               m->powering_off;
}

static void lifecycle_on_notice_round(CkptRound *r, unsigned committed, unsigned failed, void *userdata) {
        Manager *m = userdata;
        bool stopped = ckpt_round_stops(r);

        m->notice_round = ckpt_round_free(m->notice_round);
        log_info("Checkpoint round for the notice done: %u snapshot%s committed, %u failed", committed,
                 committed == 1 ? "" : "s", failed);
        if (stopped && !lifecycle_job_over(m))
                manager_set_phase(m, PHASE_DRAINED);
        if (stopped && failed == 0 && m->cloud && m->config->cloud_acknowledge && m->notice_id[0] &&
            m->provider == CLOUD_PROVIDER_AZURE) {
                int e = cloud_watch_acknowledge(m->cloud, m->notice_id);

                if (e < 0 && e != -EOPNOTSUPP)
                        log_warning_errno(e, "Cannot acknowledge notice %s: %m", m->notice_id);
        }
        if (m->shutdown_seen && m->logind)
                logind_release_inhibitor(m->logind);
        if (m->exit_after_round) {
                (void) sd_notify(false, "STOPPING=1\nSTATUS=Last checkpoint handled, exiting.");
                (void) sd_event_exit(m->event, 0);
        }
}

static int lifecycle_start_notice_round(Manager *m, bool stop, usec_t deadline, const char *why) {
        int r;

        if (m->notice_round) {
                ckpt_round_escalate(m->notice_round, stop, deadline);
                if (stop && m->phase != PHASE_DRAINING && m->phase != PHASE_DRAINED)
                        manager_set_phase(m, PHASE_DRAINING);
                return 0;
        }
        r = ckpt_round_start(&(CkptRoundParams) { .event = m->event, .config = m->config, .tasks = m->task_objs,
                                                  .syncs = m->syncs, .stop = stop, .deadline = deadline, .why = why,
                                                  .done = lifecycle_on_notice_round, .userdata = m },
                             &m->notice_round);
        if (r < 0)
                return log_error_errno(r, "Cannot start the checkpoint round for %s: %m", why);
        if (stop)
                manager_set_phase(m, PHASE_DRAINING);
        return 0;
}

void lifecycle_on_notice(Manager *m, const Notice *n) {
        char why[96];
        usec_t deadline = n->deadline;

        if (lifecycle_job_over(m)) {
                log_info("Notice %s: the job has ended here, nothing to checkpoint", n->id);
                return;
        }
        if (m->step != LIFECYCLE_RUN) {
                /* Handled once the tasks are started or adopted: a task an earlier daemon left
                 * running must be checkpointed too. */
                log_info("Notice %s before the tasks started: handled once they are", n->id);
                if (!m->has_pending_notice || (n->imminent && !m->pending_notice.imminent)) {
                        m->pending_notice = *n;
                        m->has_pending_notice = true;
                }
                return;
        }
        if (m->phase == PHASE_DRAINED && !m->notice_round)
                return;         /* handled: the tasks are stopped, the VM is going */
        if (n->imminent && deadline == USEC_INFINITY)
                deadline = now_usec(CLOCK_REALTIME) + NOTICE_DEFAULT_WINDOW_USEC;
        (void) snprintf(why, sizeof(why), "the %s notice", notice_kind_to_string(n->kind));
        if (n->imminent)
                notice_set_string(m->notice_id, sizeof(m->notice_id), n->id);
        (void) lifecycle_start_notice_round(m, n->imminent, n->imminent ? deadline : USEC_INFINITY, why);
}

void lifecycle_take_pending_notice(Manager *m) {
        Notice n;

        if (!m->has_pending_notice)
                return;
        n = m->pending_notice;
        m->has_pending_notice = false;
        lifecycle_on_notice(m, &n);
}

/* The system is going down: logind's PrepareForShutdown, or SIGTERM while systemd stops. */
void lifecycle_on_shutdown(Manager *m, bool sigterm) {
        usec_t now = now_usec(CLOCK_REALTIME);
        usec_t window = sigterm ? SHUTDOWN_SIGTERM_WINDOW_USEC : SHUTDOWN_LOGIND_WINDOW_USEC;
        char deadline[32];

        if (sigterm)
                m->exit_after_round = true;
        if (m->step != LIFECYCLE_RUN || lifecycle_job_over(m) || (m->phase == PHASE_DRAINED && !m->notice_round)) {
                /* Nothing runs that a checkpoint could save. */
                if (m->logind)
                        logind_release_inhibitor(m->logind);
                if (sigterm)
                        (void) sd_event_exit(m->event, 0);
                return;
        }
        if (!m->shutdown_seen) {
                m->shutdown_seen = true;
                m->notice = (Notice) { .provider = m->provider, .kind = NOTICE_SHUTDOWN, .received_at = now,
                                       .deadline = now + window, .imminent = true };
                strcpy(m->notice.id, "system-shutdown");
                m->has_notice = true;
                (void) snprintf(deadline, sizeof(deadline), "%" PRIu64, (uint64_t) (now + window));
                log_event_prio(LOG_WARNING, EVENT_NOTICE,
                               ((const LogField[]) { { "NOTICE_KIND", "shutdown" }, { "DEADLINE_USEC", deadline } }),
                               "The system is shutting down (%s): last-chance checkpoint",
                               sigterm ? "SIGTERM while systemd stops" : "logind PrepareForShutdown");
        }
        if (sigterm)
                (void) sd_notifyf(false, "EXTEND_TIMEOUT_USEC=%" PRIu64, (uint64_t) window);
        (void) lifecycle_start_notice_round(m, true, now + window, "the system's shutdown");
}

/* ---------------------------------------------------------------- control requests */

static ssize_t lifecycle_round_slot(Manager *m, const CkptRound *r) {
        for (size_t i = 0; i < ELEMENTSOF(m->rounds); i++)
                if (m->rounds[i] == r)
                        return (ssize_t) i;
        return -1;
}

static cJSON *lifecycle_round_reply(Manager *m, unsigned committed, unsigned failed) {
        cJSON *reply = cJSON_CreateObject(), *snaps;

        if (!reply || !cJSON_AddNumberToObject(reply, "committed", committed) ||
            !cJSON_AddNumberToObject(reply, "failed", failed) || !(snaps = cJSON_AddObjectToObject(reply, "snapshots"))) {
                cJSON_Delete(reply);
                return NULL;
        }
        for (size_t i = 0; i < m->config->n_tasks; i++) {
                const char *id = m->syncs ? task_sync_last_id(m->syncs[i]) : NULL;

                if (!cJSON_AddItemToObject(snaps, m->config->tasks[i].name, id ? cJSON_CreateString(id) : cJSON_CreateNull())) {
                        cJSON_Delete(reply);
                        return NULL;
                }
        }
        return reply;
}

static void lifecycle_on_control_round(CkptRound *r, unsigned committed, unsigned failed, void *userdata) {
        Manager *m = userdata;
        ssize_t slot = lifecycle_round_slot(m, r);
        ControlTicket *t;

        if (slot < 0)
                return;
        t = TAKE_PTR(m->round_tickets[slot]);
        m->rounds[slot] = ckpt_round_free(m->rounds[slot]);
        if (!t)
                return;
        if (failed > 0)
                (void) control_ticket_error(t, CONTROL_ERROR_FAILED, "%u snapshot%s failed (see the journal); %u committed",
                                            failed, failed == 1 ? "" : "s", committed);
        else {
                _cleanup_(cJSON_Deletep) cJSON *reply = lifecycle_round_reply(m, committed, failed);

                if (reply)
                        (void) control_ticket_reply(t, reply);
                else
                        (void) control_ticket_error(t, CONTROL_ERROR_FAILED, "out of memory");
        }
}

static int lifecycle_control_round(Manager *m, ControlClient *c, const char *task, bool stop, bool wait) {
        ssize_t slot = lifecycle_round_slot(m, NULL);
        int r;

        if (slot < 0)
                return control_client_error(c, CONTROL_ERROR_FAILED, "too many checkpoint requests at once");
        r = ckpt_round_start(&(CkptRoundParams) { .event = m->event, .config = m->config, .tasks = m->task_objs,
                                                  .syncs = m->syncs, .only = task, .stop = stop,
                                                  .deadline = USEC_INFINITY,
                                                  .why = stop ? "trainsupd stop --checkpoint" : "trainsupd checkpoint",
                                                  .done = lifecycle_on_control_round, .userdata = m },
                             &m->rounds[slot]);
        if (r < 0)
                return control_client_error(c, CONTROL_ERROR_FAILED, "cannot start the checkpoint: %s", strerror(-r));
        if (wait) {
                m->round_tickets[slot] = control_client_defer(c);
                if (!m->round_tickets[slot])
                        return control_client_error(c, CONTROL_ERROR_FAILED, "cannot wait for the result");
                return 0;
        }
        _cleanup_(cJSON_Deletep) cJSON *reply = cJSON_CreateObject();
        if (!reply || !cJSON_AddBoolToObject(reply, "requested", true))
                return control_client_error(c, CONTROL_ERROR_FAILED, "out of memory");
        return control_client_reply(c, reply);
}

void lifecycle_control_checkpoint(Manager *m, ControlClient *c, const char *task, bool wait) {
        if (m->step != LIFECYCLE_RUN || lifecycle_job_over(m)) {
                (void) control_client_error(c, CONTROL_ERROR_NOT_AVAILABLE, "no checkpoint now: the job is %s",
                                            phase_to_string(m->phase));
                return;
        }
        (void) lifecycle_control_round(m, c, task, false, wait);
}

void lifecycle_control_stop(Manager *m, ControlClient *c, bool checkpoint) {
        if (checkpoint) {
                if (m->step != LIFECYCLE_RUN || lifecycle_job_over(m)) {
                        (void) control_client_error(c, CONTROL_ERROR_NOT_AVAILABLE, "nothing to stop: the job is %s",
                                                    phase_to_string(m->phase));
                        return;
                }
                (void) lifecycle_control_round(m, c, NULL, true, true);
                return;
        }
        _cleanup_(cJSON_Deletep) cJSON *reply = cJSON_CreateObject();

        log_info("Stopping the tasks on request");
        for (size_t i = 0; i < m->config->n_tasks; i++)
                if (m->task_objs && m->task_objs[i])
                        (void) task_stop(m->task_objs[i]);
        if (!reply || !cJSON_AddBoolToObject(reply, "stopping", true))
                (void) control_client_error(c, CONTROL_ERROR_FAILED, "out of memory");
        else
                (void) control_client_reply(c, reply);
}
