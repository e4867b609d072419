/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <strings.h>

#include "cloud-gce.h"
#include "json-util.h"
#include "log.h"

#define GCE_PATH_PREEMPTED "/computeMetadata/v1/instance/preempted"
#define GCE_PATH_MAINTENANCE "/computeMetadata/v1/instance/maintenance-event"
#define GCE_PATH_TOKEN "/computeMetadata/v1/instance/service-accounts/default/token"
#define GCE_PATH_ATTRIBUTES "/computeMetadata/v1/instance/attributes/"

#define GCE_CONNECT_TIMEOUT_USEC (1 * USEC_PER_SEC)
#define GCE_VALUE_MAX_RESPONSE (4U * 1024U)
#define GCE_TOKEN_MAX_RESPONSE (64U * 1024U)
#define GCE_ATTRIBUTE_MAX_RESPONSE (512U * 1024U) /* GCE allows 256 KiB per value */
#define GCE_QUICK_503_RETRIES 5U                  /* the server may be away < 1 s during maintenance */

/* ---------------------------------------------------------------- parsers */

static bool ascii_alnum(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool ascii_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int gce_parse_value(const char *body, size_t len, char buf[static GCE_VALUE_MAX + 1]) {
        size_t start = 0, end = len;

        if (!body)
                return -EBADMSG;
        while (start < end && ascii_space(body[start]))
                start++;
        while (end > start && ascii_space(body[end - 1]))
                end--;
        if (end == start || end - start > GCE_VALUE_MAX)
                return -EBADMSG;
        for (size_t i = start; i < end; i++)
                if (body[i] <= ' ' || body[i] >= 0x7f) /* also NUL and bytes ≥ 0x80 (char is signed) */
                        return -EBADMSG;
        memcpy(buf, body + start, end - start);
        buf[end - start] = 0;
        return 0;
}

int gce_parse_preempted(const char *body, size_t len, bool *ret) {
        char v[GCE_VALUE_MAX + 1];
        int r;

        r = gce_parse_value(body, len, v);
        if (r < 0)
                return r;
        if (strcasecmp(v, "TRUE") == 0)
                *ret = true;
        else if (strcasecmp(v, "FALSE") == 0)
                *ret = false;
        else
                return -EBADMSG;
        return 0;
}

static const char *const gce_maintenance_table[_GCE_MAINTENANCE_MAX] = {
        [GCE_MAINTENANCE_NONE] = "NONE",
        [GCE_MAINTENANCE_MIGRATE] = "MIGRATE_ON_HOST_MAINTENANCE",
        [GCE_MAINTENANCE_TERMINATE] = "TERMINATE_ON_HOST_MAINTENANCE",
        [GCE_MAINTENANCE_SHUTDOWN] = "SHUTDOWN_ON_HOST_MAINTENANCE",
};

/* The tail of the notice id for each value. */
static const char *const gce_maintenance_id_table[_GCE_MAINTENANCE_MAX] = {
        [GCE_MAINTENANCE_MIGRATE] = "migrate",
        [GCE_MAINTENANCE_TERMINATE] = "terminate",
        [GCE_MAINTENANCE_SHUTDOWN] = "shutdown",
};

int gce_parse_maintenance_event(const char *body, size_t len, GceMaintenanceEvent *ret, char *ret_value) {
        char v[GCE_VALUE_MAX + 1];
        int r;

        r = gce_parse_value(body, len, v);
        if (r < 0)
                return r;
        for (const char *p = v; *p; p++)
                if (!ascii_alnum(*p) && *p != '_')
                        return -EBADMSG;
        *ret = GCE_MAINTENANCE_OTHER;
        for (GceMaintenanceEvent e = 0; e < _GCE_MAINTENANCE_MAX; e++)
                if (gce_maintenance_table[e] && strcasecmp(gce_maintenance_table[e], v) == 0)
                        *ret = e;
        if (ret_value)
                memcpy(ret_value, v, strlen(v) + 1);
        return 0;
}

int gce_preempted_notice(const char *body, size_t len, usec_t now, Notice *ret) {
        bool preempted;
        int r;

        r = gce_parse_preempted(body, len, &preempted);
        if (r < 0)
                return r;
        if (!preempted)
                return 0;
        *ret = (Notice) {
                .provider = CLOUD_PROVIDER_GCE,
                .kind = NOTICE_PREEMPT,
                .received_at = now,
                .deadline = now + GCE_PREEMPT_GRACE_USEC,
                .imminent = true,
        };
        notice_set_string(ret->id, sizeof(ret->id), "gce-preempted");
        notice_set_string(ret->summary, sizeof(ret->summary), "instance/preempted=TRUE");
        return 1;
}

int gce_maintenance_notice(const char *body, size_t len, usec_t now, Notice *ret) {
        char v[GCE_VALUE_MAX + 1], tail[GCE_VALUE_MAX + 1];
        GceMaintenanceEvent e;
        bool imminent;
        int r;

        r = gce_parse_maintenance_event(body, len, &e, v);
        if (r < 0)
                return r;
        if (e == GCE_MAINTENANCE_NONE)
                return 0;
        if (e == GCE_MAINTENANCE_OTHER) {
                size_t i = 0;

                for (; v[i]; i++)
                        tail[i] = v[i] == '_' ? '-' : (v[i] >= 'A' && v[i] <= 'Z' ? v[i] - 'A' + 'a' : v[i]);
                tail[i] = 0;
        } else
                memcpy(tail, gce_maintenance_id_table[e], strlen(gce_maintenance_id_table[e]) + 1);

        imminent = e == GCE_MAINTENANCE_TERMINATE || e == GCE_MAINTENANCE_SHUTDOWN;
        *ret = (Notice) {
                .provider = CLOUD_PROVIDER_GCE,
                .kind = NOTICE_MAINTENANCE,
                .received_at = now,
                .deadline = imminent ? now + GCE_TERMINATE_NOTICE_USEC : USEC_INFINITY,
                .imminent = imminent,
        };
        (void) snprintf(ret->id, sizeof(ret->id), "gce-maintenance-%s", tail);
        (void) snprintf(ret->summary, sizeof(ret->summary), "instance/maintenance-event=%s", v);
        return 1;
}

int gce_wait_path(const char *path, const char *etag, unsigned timeout_sec, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r;

        r = http_url_escape(etag, NULL, &e);
        if (r < 0)
                return r;
        if (asprintf(ret, "%s?wait_for_change=true&last_etag=%s&timeout_sec=%u", path, e, timeout_sec) < 0)
                return -ENOMEM;
        return 0;
}

int gce_parse_token(const char *body, size_t len, char **ret_token, usec_t *ret_expires_in) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        const cJSON *token, *expires, *type;
        char *t;

        if (!cJSON_IsObject(j))
                return -EBADMSG;
        token = cJSON_GetObjectItemCaseSensitive(j, "access_token");
        expires = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
        type = cJSON_GetObjectItemCaseSensitive(j, "token_type");
        if (!cJSON_IsString(token) || isempty(token->valuestring) || !cJSON_IsNumber(expires) ||
            !(expires->valuedouble >= 0 && expires->valuedouble <= 366.0 * 24 * 3600))
                return -EBADMSG;
        if (type && (!cJSON_IsString(type) || strcasecmp(type->valuestring, "Bearer") != 0))
                return -EBADMSG;
        t = strdup(token->valuestring);
        if (!t)
                return -ENOMEM;
        *ret_token = t;
        *ret_expires_in = (usec_t) expires->valuedouble * USEC_PER_SEC;
        return 0;
}

bool gce_attribute_key_valid(const char *key) {
        size_t n = 0;

        if (!key)
                return false;
        for (; key[n]; n++)
                if (!ascii_alnum(key[n]) && key[n] != '-' && key[n] != '_')
                        return false;
        return n > 0 && n <= 128;
}

/* ---------------------------------------------------------------- requests */

static int gce_request(CloudWatch *w, const char *path, size_t max_response, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int r;

        r = cloud_watch_request(w, "GET", path, &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "Metadata-Flavor: Google");
        if (r < 0)
                return r;
        http_request_set_max_response(req, max_response);
        *ret = TAKE_PTR(req);
        return 0;
}

/* A 2xx from something that is not the metadata server (a captive proxy, a stray web server)
 * does not count. */
static int gce_check_answer(const HttpRequest *req) {
        const char *f = http_request_header(req, "Metadata-Flavor");

        return f && strcasecmp(f, "Google") == 0 ? 0 : -EPROTO;
}

/* ---------------------------------------------------------------- the two long-poll loops */

typedef int (*GceNoticeParser)(const char *body, size_t len, usec_t now, Notice *ret);

typedef struct GceChannelInfo {
        const char *name; /* the CloudWatch channel */
        const char *path;
        GceNoticeParser parse;
} GceChannelInfo;

static const GceChannelInfo gce_channel_info[] = {
        { "preempted", GCE_PATH_PREEMPTED, gce_preempted_notice },
        { "maintenance-event", GCE_PATH_MAINTENANCE, gce_maintenance_notice },
};

typedef struct GceChannel {
        CloudWatch *w;
        const GceChannelInfo *info;
        HttpRequest *req;               /* at most one in flight */
        sd_event_source *timer;         /* the next request, after a failure or without ETag */
        char *etag;                     /* of the last answer understood; NULL: next one is a plain GET */
        char value[GCE_VALUE_MAX + 1];  /* that answer */
        usec_t started;                 /* CLOCK_BOOTTIME */
        bool long_poll;                 /* the request in flight waits for a change */
        unsigned failures;              /* consecutive */
} GceChannel;

typedef struct GceWatch {
        GceChannel channels[ELEMENTSOF(gce_channel_info)];
} GceWatch;

static void gce_channel_on_done(HttpRequest *req, int error, void *userdata);
static void gce_channel_schedule(GceChannel *c, usec_t delay);

static int gce_channel_issue(GceChannel *c) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        assert(!c->req);
        if (c->etag) {
                r = gce_wait_path(c->info->path, c->etag, GCE_WAIT_TIMEOUT_SEC, &path);
                if (r < 0)
                        return r;
        }
        r = gce_request(c->w, path ?: c->info->path, GCE_VALUE_MAX_RESPONSE, &req);
        if (r < 0)
                return r;
        if (c->etag) {
                http_request_set_timeouts(req, GCE_CONNECT_TIMEOUT_USEC,
                                          GCE_WAIT_TIMEOUT_SEC * USEC_PER_SEC + GCE_WAIT_MARGIN_USEC);
                /* The server stays silent until the value changes: curl's low-speed abort (60 s)
                 * must not cut the wait short; the total timeout bounds it instead. */
                if (curl_easy_setopt(http_request_get_curl(req), CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK)
                        return -EIO;
        }
        r = http_request_start(req, gce_channel_on_done, c);
        if (r < 0)
                return r;
        c->req = TAKE_PTR(req);
        c->started = now_usec(CLOCK_BOOTTIME);
        c->long_poll = c->etag != NULL;
        return 0;
}

static void gce_channel_failed(GceChannel *c, int error, long status, const char *why) {
        char what[160];
        unsigned f;

        if (c->failures < UINT_MAX)
                c->failures++;
        /* Start over with a plain GET: it answers at once, whatever went wrong with the wait. */
        c->etag = mfree(c->etag);
        if (status > 0)
                (void) snprintf(what, sizeof(what), "GET %s: HTTP %ld%s", c->info->path, status, why);
        else
                (void) snprintf(what, sizeof(what), "GET %s%s", c->info->path, why);
        cloud_watch_condition(c->w, c->info->name, error, what);

        f = status == 503 && c->failures <= GCE_QUICK_503_RETRIES ? 1 : c->failures;
        gce_channel_schedule(c, cloud_watch_next_delay(c->w, f));
}

static void gce_channel_issue_or_retry(GceChannel *c) {
        int r = gce_channel_issue(c);

        if (r < 0)
                gce_channel_failed(c, r, 0, ": cannot start request");
}

static int gce_channel_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        GceChannel *c = userdata;

        if (!c->req)
                gce_channel_issue_or_retry(c);
        return 0;
}

static void gce_channel_schedule(GceChannel *c, usec_t delay) {
        int r = cloud_watch_arm(c->w, &c->timer, delay, gce_channel_on_timer, c);

        if (r < 0)
                /* Without a timer the loop would stop for good: say so, loudly, once. */
                cloud_watch_condition(c->w, c->info->name, r, "cannot arm the poll timer");
}

/* Remembers the answer's ETag and value. Returns > 0 when the value differs from the last one. */
static int gce_channel_remember(GceChannel *c, const HttpRequest *req) {
        const char *etag = http_request_header(req, "ETag");
        char v[GCE_VALUE_MAX + 1];
        size_t len;
        const char *body = http_request_body(req, &len);
        bool changed;

        if (gce_parse_value(body, len, v) < 0) /* cannot happen: the notice parser took it */
                v[0] = 0;
        changed = !streq(v, c->value);
        memcpy(c->value, v, sizeof(v));
        free(c->etag);
        c->etag = isempty(etag) ? NULL : strdup(etag);
        if (!isempty(etag) && !c->etag)
                return -ENOMEM;
        return changed;
}

static const char *gce_error_detail(int error) {
        switch (error) {
        case -EPROTO:
                return ": answer without Metadata-Flavor: Google, not the metadata server";
        case -EBADMSG:
                return ": unexpected answer";
        default:
                return "";
        }
}

static void gce_channel_on_done(HttpRequest *req, int error, void *userdata) {
        GceChannel *c = userdata;
        usec_t took = now_usec(CLOCK_BOOTTIME) - c->started;
        bool was_long_poll = c->long_poll;
        long status = http_request_status(req);
        Notice n = {};
        int k = 0, changed = 0;

        assert(req == c->req);
        if (error >= 0)
                error = gce_check_answer(req);
        if (error >= 0) {
                size_t len;
                const char *body = http_request_body(req, &len);

                k = c->info->parse(body, len, now_usec(CLOCK_REALTIME), &n);
                if (k < 0)
                        error = k;
        }
        if (error >= 0)
                changed = error = gce_channel_remember(c, req);
        c->req = http_request_free(c->req);

        if (error < 0) {
                gce_channel_failed(c, error, status, gce_error_detail(error));
                return;
        }
        c->failures = 0;
        cloud_watch_update(c->w, c->info->name, &n, (size_t) k);

        if (!c->etag)
                /* No ETag, no long-poll: poll plainly. */
                gce_channel_schedule(c, c->w->poll_interval);
        else if (was_long_poll && !changed && took < GCE_WAIT_TIMEOUT_SEC * USEC_PER_SEC / 2)
                /* Answered early with nothing new: something in between does not wait. Do not spin. */
                gce_channel_schedule(c, c->w->poll_interval);
        else
                /* At once: the next change must be seen within milliseconds. */
                gce_channel_issue_or_retry(c);
}

static void gce_stop(CloudWatch *w) {
        GceWatch *g = w->data;

        if (!g)
                return;
        for (size_t i = 0; i < ELEMENTSOF(g->channels); i++) {
                GceChannel *c = &g->channels[i];

                c->req = http_request_free(c->req);
                c->timer = sd_event_source_disable_unref(c->timer);
                c->etag = mfree(c->etag);
        }
        w->data = mfree(g);
}

static int gce_start(CloudWatch *w) {
        GceWatch *g;

        if (w->data)
                return -EBUSY;
        g = calloc(1, sizeof(GceWatch));
        if (!g)
                return -ENOMEM;
        w->data = g;
        for (size_t i = 0; i < ELEMENTSOF(g->channels); i++) {
                g->channels[i] = (GceChannel) { .w = w, .info = &gce_channel_info[i] };
                gce_channel_issue_or_retry(&g->channels[i]);
        }
        return 0;
}

const CloudProviderVTable cloud_gce = {
        .id = CLOUD_PROVIDER_GCE,
        .name = "gce",
        /* metadata.google.internal is this address; the literal needs no DNS. */
        .default_base_url = "http://169.254.169.254",
        .start = gce_start,
        .stop = gce_stop,
};

/* ---------------------------------------------------------------- one-shot reads */

struct GceFetch {
        HttpRequest *req;
        GceTokenHandler on_token;
        GceValueHandler on_value;
        void *userdata;
};

GceFetch *gce_fetch_free(GceFetch *f) {
        if (!f)
                return NULL;
        http_request_free(f->req);
        return mfree(f);
}

static void gce_fetch_on_done(HttpRequest *req, int error, void *userdata) {
        _cleanup_free_ char *token = NULL;
        GceFetch *f = userdata;
        usec_t expires_in = 0;
        size_t len;
        const char *body = http_request_body(req, &len);

        if (error >= 0)
                error = gce_check_answer(req);
        if (f->on_value) {
                /* may free f */
                f->on_value(f, error, error < 0 ? NULL : body, error < 0 ? 0 : len, f->userdata);
                return;
        }
        if (error >= 0)
                error = gce_parse_token(body, len, &token, &expires_in);
        f->on_token(f, error, token, expires_in, f->userdata); /* may free f */
        if (token)
                explicit_bzero(token, strlen(token));
}

/* One read of path, answered through on_token (parsed as a token) or on_value (the raw body). */
static int gce_fetch_start(CloudWatch *w, const char *path, size_t max_response, GceTokenHandler on_token,
                           GceValueHandler on_value, void *userdata, GceFetch **ret) {
        _cleanup_(gce_fetch_freep) GceFetch *f = NULL;
        int r;

        f = calloc(1, sizeof(GceFetch));
        if (!f)
                return -ENOMEM;
        *f = (GceFetch) { .on_token = on_token, .on_value = on_value, .userdata = userdata };
        r = gce_request(w, path, max_response, &f->req);
        if (r < 0)
                return r;
        r = http_request_start(f->req, gce_fetch_on_done, f);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(f);
        return 0;
}

int gce_fetch_token(CloudWatch *w, GceTokenHandler handler, void *userdata, GceFetch **ret) {
        return gce_fetch_start(w, GCE_PATH_TOKEN, GCE_TOKEN_MAX_RESPONSE, handler, NULL, userdata, ret);
}

int gce_fetch_attribute(CloudWatch *w, const char *key, GceValueHandler handler, void *userdata,
                        GceFetch **ret) {
        _cleanup_free_ char *path = NULL;

        if (!gce_attribute_key_valid(key))
                return -EINVAL;
        if (asprintf(&path, GCE_PATH_ATTRIBUTES "%s", key) < 0)
                return -ENOMEM;
        return gce_fetch_start(w, path, GCE_ATTRIBUTE_MAX_RESPONSE, NULL, handler, userdata, ret);
}
