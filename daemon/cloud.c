/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <strings.h>

#include "cloud.h"
#include "log.h"

static const char *const notice_kind_table[_NOTICE_KIND_MAX] = {
        [NOTICE_SPOT_INTERRUPTION] = "spot-interruption",
        [NOTICE_REBALANCE] = "rebalance",
        [NOTICE_MAINTENANCE] = "maintenance",
        [NOTICE_PREEMPT] = "preempt",
        [NOTICE_TERMINATE] = "terminate",
        [NOTICE_REBOOT] = "reboot",
        [NOTICE_REDEPLOY] = "redeploy",
        [NOTICE_FREEZE] = "freeze",
        [NOTICE_SHUTDOWN] = "shutdown",
};

const char *notice_kind_to_string(NoticeKind k) {
        return k >= 0 && k < _NOTICE_KIND_MAX ? notice_kind_table[k] : NULL;
}

NoticeKind notice_kind_from_string(const char *s) {
        for (NoticeKind k = 0; s && k < _NOTICE_KIND_MAX; k++)
                if (streq(notice_kind_table[k], s))
                        return k;
        return _NOTICE_KIND_INVALID;
}

void notice_set_string(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ?: "");
}

const CloudProviderVTable *cloud_provider_vtable(CloudProvider p) {
        switch (p) {
        case CLOUD_PROVIDER_AWS:
                return &cloud_aws;
        case CLOUD_PROVIDER_GCE:
                return &cloud_gce;
        case CLOUD_PROVIDER_AZURE:
                return &cloud_azure;
        case CLOUD_PROVIDER_ALIBABA:
                return &cloud_alibaba;
        default:
                return NULL;
        }
}

CloudWatch *cloud_watch_free(CloudWatch *w) {
        if (!w)
                return NULL;
        if (w->data && w->vtable->stop)
                w->vtable->stop(w);
        free(w->known);
        free(w->known_channels);
        free(w->base_url);
        sd_event_unref(w->event);
        return mfree(w);
}

int cloud_watch_new(CloudWatch **ret, CloudProvider provider, sd_event *event, CurlGlue *glue,
                    const char *base_url, usec_t poll_interval, CloudNoticeHandler on_notice, void *userdata) {
        _cleanup_(cloud_watch_freep) CloudWatch *w = NULL;
        const CloudProviderVTable *vt = cloud_provider_vtable(provider);
        size_t l;

        if (!vt)
                return -EINVAL;
        w = calloc(1, sizeof(CloudWatch));
        if (!w)
                return -ENOMEM;
        *w = (CloudWatch) { .vtable = vt, .event = sd_event_ref(event), .glue = glue,
                            .poll_interval = poll_interval, .on_notice = on_notice, .userdata = userdata };
        w->base_url = strdup(base_url ?: vt->default_base_url);
        if (!w->base_url)
                return -ENOMEM;
        l = strlen(w->base_url);
        while (l > 0 && w->base_url[l - 1] == '/')
                w->base_url[--l] = 0;
        *ret = TAKE_PTR(w);
        return 0;
}

int cloud_watch_start(CloudWatch *w) {
        return w->vtable->start(w);
}

int cloud_watch_acknowledge(CloudWatch *w, const char *notice_id) {
        if (!w->vtable->acknowledge)
                return -EOPNOTSUPP;
        return w->vtable->acknowledge(w, notice_id);
}

const char *cloud_watch_name(const CloudWatch *w) {
        return w->vtable->name;
}

static CloudChannel *cloud_watch_channel(CloudWatch *w, const char *name) {
        for (size_t i = 0; i < w->n_channels; i++)
                if (streq(w->channels[i].name, name))
                        return &w->channels[i];
        if (w->n_channels >= ELEMENTSOF(w->channels))
                return NULL;
        w->channels[w->n_channels] = (CloudChannel) { .name = name };
        return &w->channels[w->n_channels++];
}

void cloud_watch_condition(CloudWatch *w, const char *channel, int error, const char *what) {
        CloudChannel *c = cloud_watch_channel(w, channel);
        const char *name = w->vtable->name;

        if (!c || c->error == error)
                return;
        if (error < 0) {
                errno = -error;
                log_event_prio(LOG_WARNING, EVENT_ERROR,
                               ((const LogField[]) { { "PROVIDER", name }, { "CHANNEL", channel } }),
                               "%s metadata (%s): %s: %m; watching goes on", name, channel, strna(what));
        } else
                log_info("%s metadata (%s) answers again", name, channel);
        c->error = error;
}

static void format_deadline_field(char buf[static 32], usec_t deadline) {
        if (deadline == USEC_INFINITY)
                buf[0] = 0;
        else
                snprintf(buf, 32, "%llu", (unsigned long long) deadline);
}

static void cloud_watch_log_notice(CloudWatch *w, const Notice *n, bool gone) {
        char dl[32], when[RFC3339_MAX];

        format_deadline_field(dl, n->deadline);
        if (n->deadline != USEC_INFINITY)
                format_rfc3339(when, n->deadline);
        const LogField f[] = {
                { "PROVIDER", w->vtable->name },
                { "NOTICE_KIND", notice_kind_to_string(n->kind) },
                { "NOTICE_ID", n->id },
                { "IMMINENT", n->imminent ? "1" : "0" },
                { "DEADLINE_USEC", dl[0] ? dl : NULL },
        };
        if (gone)
                log_event_prio(LOG_NOTICE, EVENT_NOTICE_CANCELLED, f, "%s %s notice %s withdrawn", w->vtable->name,
                               notice_kind_to_string(n->kind), n->id);
        else
                log_event_prio(n->imminent ? LOG_WARNING : LOG_NOTICE, EVENT_NOTICE, f, "%s %s notice (%s), deadline %s: %s",
                               w->vtable->name, notice_kind_to_string(n->kind), n->imminent ? "imminent" : "advisory",
                               n->deadline != USEC_INFINITY ? when : "none", n->summary);
}

static ssize_t cloud_watch_find(const CloudWatch *w, const char *channel, const char *id) {
        for (size_t i = 0; i < w->n_known; i++)
                if (streq(w->known_channels[i], channel) && streq(w->known[i].id, id))
                        return (ssize_t) i;
        return -1;
}

static void cloud_watch_forget(CloudWatch *w, size_t i) {
        Notice n = w->known[i];

        memmove(w->known + i, w->known + i + 1, (w->n_known - i - 1) * sizeof(Notice));
        memmove(w->known_channels + i, w->known_channels + i + 1, (w->n_known - i - 1) * sizeof(char *));
        w->n_known--;
        cloud_watch_log_notice(w, &n, true);
        if (w->on_notice)
                w->on_notice(w, &n, true, w->userdata);
}

static int cloud_watch_remember(CloudWatch *w, const char *channel, const Notice *n) {
        Notice *k;
        char **c;

        k = realloc(w->known, (w->n_known + 1) * sizeof(Notice));
        if (!k)
                return -ENOMEM;
        w->known = k;
        c = realloc(w->known_channels, (w->n_known + 1) * sizeof(char *));
        if (!c)
                return -ENOMEM;
        w->known_channels = c;
        w->known[w->n_known] = *n;
        w->known[w->n_known].provider = w->vtable->id;
        /* The provider's own reading when it has one: its deadline may be counted from it. */
        if (w->known[w->n_known].received_at == 0)
                w->known[w->n_known].received_at = now_usec(CLOCK_REALTIME);
        w->known_channels[w->n_known] = (char *) channel;
        w->n_known++;
        return 0;
}

static bool notice_listed(const Notice *notices, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (streq(notices[i].id, id))
                        return true;
        return false;
}

void cloud_watch_update(CloudWatch *w, const char *channel, const Notice *notices, size_t n) {
        cloud_watch_condition(w, channel, 0, NULL);

        for (size_t i = w->n_known; i > 0; i--)
                if (streq(w->known_channels[i - 1], channel) && !notice_listed(notices, n, w->known[i - 1].id))
                        cloud_watch_forget(w, i - 1);

        for (size_t i = 0; i < n; i++) {
                ssize_t k = cloud_watch_find(w, channel, notices[i].id);

                if (k >= 0) {
                        /* Seen before: the first deadline counts, but a late one fills a gap. */
                        if (w->known[k].deadline == USEC_INFINITY && notices[i].deadline != USEC_INFINITY)
                                w->known[k].deadline = notices[i].deadline;
                        continue;
                }
                if (cloud_watch_remember(w, channel, &notices[i]) < 0) {
                        log_error("Out of memory while recording a notice");
                        continue;
                }
                cloud_watch_log_notice(w, &w->known[w->n_known - 1], false);
                if (w->on_notice)
                        w->on_notice(w, &w->known[w->n_known - 1], false, w->userdata);
        }
}

int cloud_watch_request(CloudWatch *w, const char *method, const char *path, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        int r;

        if (asprintf(&url, "%s%s", w->base_url, path) < 0)
                return -ENOMEM;
        r = http_request_new(&req, w->glue, method, url);
        if (r < 0)
                return r;
        http_request_set_timeouts(req, 1 * USEC_PER_SEC, 2 * USEC_PER_SEC);
        http_request_set_max_response(req, 64 * 1024);
        http_request_set_no_proxy(req, true);
        *ret = TAKE_PTR(req);
        return 0;
}

usec_t cloud_watch_next_delay(const CloudWatch *w, unsigned failures) {
        usec_t d = 100 * USEC_PER_MSEC;

        if (failures == 0)
                return w->poll_interval;
        for (unsigned i = 1; i < failures && d < w->poll_interval; i++)
                d *= 2;
        return MIN(d, w->poll_interval);
}

int cloud_watch_arm(CloudWatch *w, sd_event_source **s, usec_t delay, sd_event_time_handler_t handler,
                    void *userdata) {
        int r;

        if (*s) {
                r = sd_event_source_set_time_relative(*s, delay);
                if (r >= 0)
                        r = sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
                return r;
        }
        r = sd_event_add_time_relative(w->event, s, CLOCK_BOOTTIME, delay, USEC_PER_MSEC, handler, userdata);
        if (r >= 0)
                (void) sd_event_source_set_description(*s, "cloud-poll");
        return r;
}

static int month_from_name(const char *m) {
        static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

        for (int i = 0; i < 12; i++)
                if (strcasecmp(months[i], m) == 0)
                        return i;
        return -1;
}

int parse_http_date(const char *s, usec_t *ret) {
        char month[4], zone[4];
        int day, year, hh, mm, ss, n = 0, mon;
        struct tm tm;
        time_t t;

        if (!s)
                return -EINVAL;
        /* An optional weekday: "Mon, " */
        const char *comma = strchr(s, ',');
        if (comma)
                s = comma + 1;
        if (sscanf(s, " %d %3s %d %d:%d:%d %3s%n", &day, month, &year, &hh, &mm, &ss, zone, &n) != 7 ||
            s[n] != 0 || strcmp(zone, "GMT") != 0)
                return -EINVAL;
        mon = month_from_name(month);
        if (mon < 0 || day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60)
                return -EINVAL;
        tm = (struct tm) { .tm_year = year - 1900, .tm_mon = mon, .tm_mday = day, .tm_hour = hh, .tm_min = mm,
                           .tm_sec = ss };
        t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        *ret = (usec_t) t * USEC_PER_SEC;
        return 0;
}
