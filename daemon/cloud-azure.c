/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>

#include "cloud-azure.h"
#include "json-util.h"
#include "log.h"
#include "strv.h"

#define AZURE_CHANNEL "scheduledevents"
#define AZURE_TOKEN_MAX_RESPONSE (64U * 1024U)

/* ---------------------------------------------------------------- parsers */

static bool ascii_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *str_or_empty(const char *s) {
        return s ?: "";
}

static bool blank(const char *s) {
        for (; s && *s; s++)
                if (!ascii_space(*s))
                        return false;
        return true;
}

/* Absent and null are both "not given" (*ret = NULL); any other type than a string is garbage. */
static int json_optional_string(const cJSON *o, const char *key, const char **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!v || cJSON_IsNull(v)) {
                *ret = NULL;
                return 0;
        }
        if (!cJSON_IsString(v))
                return -EBADMSG;
        *ret = v->valuestring;
        return 0;
}

typedef struct AzureEventType {
        const char *name;
        NoticeKind kind;
        bool imminent;
        usec_t min_notice; /* documented minimum, for an imminent event without NotBefore */
} AzureEventType;

static const AzureEventType azure_event_types[] = {
        { "Preempt", NOTICE_PREEMPT, true, AZURE_PREEMPT_NOTICE_USEC },
        { "Terminate", NOTICE_TERMINATE, true, AZURE_TERMINATE_NOTICE_USEC },
        { "Reboot", NOTICE_REBOOT, false, 0 },
        { "Redeploy", NOTICE_REDEPLOY, false, 0 },
        { "Freeze", NOTICE_FREEZE, false, 0 },
};

static const AzureEventType azure_event_type_other = { NULL, NOTICE_MAINTENANCE, false, 0 };

static const AzureEventType *azure_event_type(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(azure_event_types); i++)
                if (strcasecmp(azure_event_types[i].name, name) == 0)
                        return &azure_event_types[i];
        return &azure_event_type_other;
}

bool azure_event_id_valid(const char *id) {
        size_t n = 0;

        if (!id)
                return false;
        for (; id[n]; n++)
                if (id[n] < ' ' || id[n] >= 0x7f)
                        return false;
        return n > 0 && n < NOTICE_ID_MAX;
}

/* "vm1,vm2" from Resources (absent: ""); anything but an array of strings is garbage. */
static int azure_event_resources(const cJSON *e, char *buf, size_t size) {
        const cJSON *resources = cJSON_GetObjectItemCaseSensitive(e, "Resources"), *r;
        size_t used = 0;

        buf[0] = 0;
        if (!resources || cJSON_IsNull(resources))
                return 0;
        if (!cJSON_IsArray(resources))
                return -EBADMSG;
        cJSON_ArrayForEach(r, resources) {
                if (!cJSON_IsString(r))
                        return -EBADMSG;
                if (used < size)
                        used += (size_t) snprintf(buf + used, size - used, "%s%s", used > 0 ? "," : "",
                                                  r->valuestring);
        }
        return 0;
}

static int azure_event_duration(const cJSON *e, long long *ret) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "DurationInSeconds");

        *ret = -1;
        if (!d || cJSON_IsNull(d))
                return 0;
        if (!cJSON_IsNumber(d) || !isfinite(d->valuedouble) || d->valuedouble < -1 || d->valuedouble > 1e9)
                return -EBADMSG;
        *ret = (long long) d->valuedouble;
        return 0;
}

static int azure_parse_event(const cJSON *e, usec_t now, Notice *ret) {
        const char *id, *type_name, *status, *not_before, *description, *source;
        const AzureEventType *type;
        char resources[96];
        long long duration;
        usec_t deadline;
        int r;

        if (!cJSON_IsObject(e))
                return -EBADMSG;
        if (json_optional_string(e, "EventId", &id) < 0 || !azure_event_id_valid(id) ||
            json_optional_string(e, "EventType", &type_name) < 0 || isempty(type_name) ||
            json_optional_string(e, "EventStatus", &status) < 0 ||
            json_optional_string(e, "NotBefore", &not_before) < 0 ||
            json_optional_string(e, "Description", &description) < 0 ||
            json_optional_string(e, "EventSource", &source) < 0 ||
            azure_event_duration(e, &duration) < 0 ||
            azure_event_resources(e, resources, sizeof(resources)) < 0)
                return -EBADMSG;

        type = azure_event_type(type_name);
        if (!blank(not_before)) {
                r = parse_http_date(not_before, &deadline);
                if (r < 0)
                        return -EBADMSG;
        } else if (!type->imminent)
                deadline = USEC_INFINITY;
        else if (status && strcasecmp(status, "Started") == 0)
                deadline = now; /* under way: no time left */
        else
                deadline = now + type->min_notice;

        *ret = (Notice) {
                .provider = CLOUD_PROVIDER_AZURE,
                .kind = type->kind,
                .received_at = now,
                .deadline = deadline,
                .imminent = type->imminent,
        };
        notice_set_string(ret->id, sizeof(ret->id), id);
        (void) snprintf(ret->summary, sizeof(ret->summary),
                        "%s %s, NotBefore \"%s\", %s, %llds, resources %s: %s", type_name, strna(status),
                        str_or_empty(not_before), strna(source), duration, resources[0] ? resources : "n/a",
                        str_or_empty(description));
        return 0;
}

static int azure_parse_incarnation(const cJSON *v, uint64_t *ret) {
        double d;

        if (!cJSON_IsNumber(v))
                return -EBADMSG;
        d = v->valuedouble;
        if (!(d >= 0))
                return -EBADMSG;
        if (d >= 18446744073709551616.0) { /* 2^64, and inf from "1e999" */
                *ret = UINT64_MAX;
                return 0;
        }
        if ((double) (uint64_t) d != d) /* 2.5 */
                return -EBADMSG;
        *ret = (uint64_t) d;
        return 0;
}

int azure_parse_scheduled_events(const char *body, size_t len, usec_t now, uint64_t *ret_incarnation,
                                 Notice **ret_notices, size_t *ret_n_notices) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        _cleanup_free_ Notice *notices = NULL;
        const cJSON *events, *e;
        uint64_t incarnation;
        size_t n, i = 0;
        int r;

        if (!cJSON_IsObject(j))
                return -EBADMSG;
        r = azure_parse_incarnation(cJSON_GetObjectItemCaseSensitive(j, "DocumentIncarnation"), &incarnation);
        if (r < 0)
                return r;
        events = cJSON_GetObjectItemCaseSensitive(j, "Events");
        if (!cJSON_IsArray(events))
                return -EBADMSG;
        n = (size_t) cJSON_GetArraySize(events);
        if (n > AZURE_EVENTS_MAX)
                return -EBADMSG;
        if (n > 0) {
                notices = calloc(n, sizeof(Notice));
                if (!notices)
                        return -ENOMEM;
        }
        cJSON_ArrayForEach(e, events) {
                r = azure_parse_event(e, now, &notices[i++]);
                if (r < 0)
                        return r;
        }
        *ret_incarnation = incarnation;
        *ret_notices = TAKE_PTR(notices);
        *ret_n_notices = n;
        return 0;
}

int azure_ack_body(const char *event_id, char **ret) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        cJSON *requests, *item;
        char *s;

        if (!azure_event_id_valid(event_id))
                return -EINVAL;
        j = cJSON_CreateObject();
        if (!j)
                return -ENOMEM;
        requests = cJSON_AddArrayToObject(j, "StartRequests");
        if (!requests)
                return -ENOMEM;
        item = cJSON_CreateObject();
        if (!item)
                return -ENOMEM;
        if (!cJSON_AddItemToArray(requests, item)) {
                cJSON_Delete(item);
                return -ENOMEM;
        }
        if (!cJSON_AddStringToObject(item, "EventId", event_id))
                return -ENOMEM;
        s = cJSON_PrintUnformatted(j); /* default hooks: malloc(), so free() is right */
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int azure_token_path(const char *resource, const char *client_id, char **ret) {
        _cleanup_free_ char *r_esc = NULL, *c_esc = NULL;
        int r;

        if (isempty(resource))
                return -EINVAL;
        r = http_url_escape(resource, NULL, &r_esc);
        if (r < 0)
                return r;
        if (!isempty(client_id)) {
                r = http_url_escape(client_id, NULL, &c_esc);
                if (r < 0)
                        return r;
        }
        if (asprintf(ret, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=%s%s%s", r_esc,
                     c_esc ? "&client_id=" : "", str_or_empty(c_esc)) < 0)
                return -ENOMEM;
        return 0;
}

static int azure_token_seconds(const cJSON *v, usec_t *ret) {
        unsigned long long s;
        char *end;

        if (cJSON_IsNumber(v)) {
                if (!(v->valuedouble >= 0 && v->valuedouble <= 366.0 * 24 * 3600))
                        return -EBADMSG;
                *ret = (usec_t) v->valuedouble * USEC_PER_SEC;
                return 0;
        }
        if (!cJSON_IsString(v) || v->valuestring[0] < '0' || v->valuestring[0] > '9')
                return -EBADMSG;
        errno = 0;
        s = strtoull(v->valuestring, &end, 10);
        if (errno != 0 || *end || s > 366ULL * 24 * 3600)
                return -EBADMSG;
        *ret = (usec_t) s * USEC_PER_SEC;
        return 0;
}

int azure_parse_token(const char *body, size_t len, char **ret_token, usec_t *ret_expires_in) {
        _cleanup_(cJSON_Deletep) cJSON *j = json_parse_exact(body, len);
        const cJSON *token, *type;
        usec_t expires_in;
        char *t;

        if (!cJSON_IsObject(j))
                return -EBADMSG;
        token = cJSON_GetObjectItemCaseSensitive(j, "access_token");
        type = cJSON_GetObjectItemCaseSensitive(j, "token_type");
        if (!cJSON_IsString(token) || isempty(token->valuestring) ||
            azure_token_seconds(cJSON_GetObjectItemCaseSensitive(j, "expires_in"), &expires_in) < 0)
                return -EBADMSG;
        if (type && (!cJSON_IsString(type) || strcasecmp(type->valuestring, "Bearer") != 0))
                return -EBADMSG;
        t = strdup(token->valuestring);
        if (!t)
                return -ENOMEM;
        *ret_token = t;
        *ret_expires_in = expires_in;
        return 0;
}

/* ---------------------------------------------------------------- the watch */

typedef struct AzureWatch {
        CloudWatch *w;

        HttpRequest *poll;              /* at most one in flight */
        sd_event_source *poll_timer;
        unsigned failures;              /* consecutive */
        bool enabled;                   /* the service answered once: no more slow first call */
        bool have_incarnation;
        uint64_t incarnation;

        usec_t last_request;            /* CLOCK_BOOTTIME start of the newest request of any kind */

        char **acks;                    /* EventIds to acknowledge, in order; acks[0] is the current one */
        HttpRequest *ack;
        sd_event_source *ack_timer;
        unsigned ack_failures;
} AzureWatch;

/* How long before the next request may start (the 5 requests/s limit counts every request). */
static usec_t azure_gate(const AzureWatch *a) {
        usec_t now = now_usec(CLOCK_BOOTTIME);

        if (a->last_request == 0 || now >= a->last_request + AZURE_MIN_SPACING_USEC)
                return 0;
        return a->last_request + AZURE_MIN_SPACING_USEC - now;
}

static int azure_request(AzureWatch *a, const char *method, HttpRequest **ret) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int r;

        /* cloud_watch_request() already bypasses any proxy, as IMDS requires. */
        r = cloud_watch_request(a->w, method, AZURE_SCHEDULED_EVENTS_PATH, &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "Metadata: true");
        if (r < 0)
                return r;
        *ret = TAKE_PTR(req);
        return 0;
}

static int azure_start_request(AzureWatch *a, HttpRequest *req, HttpRequestDone done) {
        int r = http_request_start(req, done, a);

        if (r >= 0)
                a->last_request = now_usec(CLOCK_BOOTTIME);
        return r;
}

static int azure_on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata);
static void azure_on_poll_done(HttpRequest *req, int error, void *userdata);

static void azure_schedule_poll(AzureWatch *a, usec_t delay) {
        int r = cloud_watch_arm(a->w, &a->poll_timer, delay, azure_on_poll_timer, a);

        if (r < 0)
                cloud_watch_condition(a->w, AZURE_CHANNEL, r, "cannot arm the poll timer");
}

static void azure_poll_failed(AzureWatch *a, int error, long status, const char *why) {
        char what[160];

        if (a->failures < UINT_MAX)
                a->failures++;
        if (status > 0)
                (void) snprintf(what, sizeof(what), "GET %s: HTTP %ld%s", AZURE_SCHEDULED_EVENTS_PATH, status,
                                why);
        else
                (void) snprintf(what, sizeof(what), "GET %s%s", AZURE_SCHEDULED_EVENTS_PATH, why);
        cloud_watch_condition(a->w, AZURE_CHANNEL, error, what);
        /* 429: the window is one second; asking sooner only earns another 429. */
        azure_schedule_poll(a, status == 429 ? a->w->poll_interval
                                             : cloud_watch_next_delay(a->w, a->failures));
}

static int azure_poll_issue(AzureWatch *a) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int r;

        assert(!a->poll);
        r = azure_request(a, "GET", &req);
        if (r < 0)
                return r;
        if (!a->enabled) {
                /* The first call enables the service and may take up to 2 minutes to answer. */
                http_request_set_timeouts(req, USEC_PER_SEC, AZURE_FIRST_CALL_TIMEOUT_USEC);
                if (curl_easy_setopt(http_request_get_curl(req), CURLOPT_LOW_SPEED_TIME, 0L) != CURLE_OK)
                        return -EIO;
        }
        r = azure_start_request(a, req, azure_on_poll_done);
        if (r < 0)
                return r;
        a->poll = TAKE_PTR(req);
        return 0;
}

static int azure_ack_issue(AzureWatch *a);
static void azure_ack_failed(AzureWatch *a, int error, long status);

static int azure_on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        AzureWatch *a = userdata;
        usec_t wait = azure_gate(a);
        int r;

        if (a->poll)
                return 0;
        if (wait > 0) {
                azure_schedule_poll(a, wait);
                return 0;
        }
        /* Both wait for the same slot of the rate limit: a queued acknowledgement (not one
         * backing off after a failure) goes first, or a fast poll could take every slot. */
        if (!a->ack && a->acks && a->acks[0] && a->ack_failures == 0) {
                r = azure_ack_issue(a);
                if (r < 0)
                        azure_ack_failed(a, r, 0);
                azure_schedule_poll(a, azure_gate(a) ?: AZURE_MIN_SPACING_USEC);
                return 0;
        }
        r = azure_poll_issue(a);
        if (r < 0)
                azure_poll_failed(a, r, 0, ": cannot start request");
        return 0;
}

static void azure_on_poll_done(HttpRequest *req, int error, void *userdata) {
        _cleanup_free_ Notice *notices = NULL;
        AzureWatch *a = userdata;
        long status = http_request_status(req);
        uint64_t incarnation = 0;
        size_t n = 0;

        assert(req == a->poll);
        if (error >= 0) {
                size_t len;
                const char *body = http_request_body(req, &len);

                error = azure_parse_scheduled_events(body, len, now_usec(CLOCK_REALTIME), &incarnation,
                                                     &notices, &n);
        }
        a->poll = http_request_free(a->poll);
        if (error < 0) {
                azure_poll_failed(a, error, status, error == -EBADMSG ? ": unexpected answer" : "");
                return;
        }
        a->enabled = true;
        a->failures = 0;
        if (!a->have_incarnation || incarnation != a->incarnation)
                log_debug("Azure scheduled events: incarnation %" PRIu64 ", %zu event(s)", incarnation, n);
        a->incarnation = incarnation;
        a->have_incarnation = true;
        cloud_watch_update(a->w, AZURE_CHANNEL, notices, n);
        azure_schedule_poll(a, a->w->poll_interval);
}

/* ---- acknowledgements: POST StartRequests, one at a time, through the same gate */

static int azure_on_ack_timer(sd_event_source *s, uint64_t usec, void *userdata);
static void azure_on_ack_done(HttpRequest *req, int error, void *userdata);

static bool timer_armed(sd_event_source *s) {
        int enabled = SD_EVENT_OFF;

        return s && sd_event_source_get_enabled(s, &enabled) >= 0 && enabled != SD_EVENT_OFF;
}

static void azure_schedule_ack(AzureWatch *a, usec_t delay) {
        int r = cloud_watch_arm(a->w, &a->ack_timer, delay, azure_on_ack_timer, a);

        if (r < 0)
                log_warning_errno(r, "Cannot arm the Azure acknowledgement timer: %m");
}

static void azure_ack_log(const char *id, int error, long status) {
        const LogField f[] = { { "PROVIDER", cloud_azure.name }, { "NOTICE_ID", id } };

        if (error >= 0) {
                log_event_fields(EVENT_NOTICE_ACKNOWLEDGED, f,
                                 "Acknowledged Azure event %s (StartRequests): the platform may go ahead",
                                 id);
                return;
        }
        errno = -error;
        if (status > 0)
                log_event_fields(EVENT_ERROR, f, "Cannot acknowledge Azure event %s: HTTP %ld: %m", id,
                                 status);
        else
                log_event_fields(EVENT_ERROR, f, "Cannot acknowledge Azure event %s: %m", id);
}

/* acks[0] is done with (acknowledged or given up): on to the next one. */
static void azure_ack_next(AzureWatch *a) {
        size_t n = strv_length(a->acks);

        if (n > 0) {
                free(a->acks[0]);
                memmove(a->acks, a->acks + 1, n * sizeof(char *)); /* includes the NULL */
        }
        a->ack_failures = 0;
        if (a->acks && a->acks[0])
                azure_schedule_ack(a, 0);
}

static void azure_ack_failed(AzureWatch *a, int error, long status) {
        a->ack_failures++;
        if (http_error_retryable(error) && a->ack_failures < AZURE_ACK_ATTEMPTS) {
                azure_schedule_ack(a, cloud_watch_next_delay(a->w, a->ack_failures + 1));
                return;
        }
        azure_ack_log(a->acks[0], error, status);
        azure_ack_next(a);
}

static int azure_ack_issue(AzureWatch *a) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *body = NULL;
        int r;

        assert(!a->ack && a->acks && a->acks[0]);
        r = azure_ack_body(a->acks[0], &body);
        if (r < 0)
                return r;
        r = azure_request(a, "POST", &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "Content-Type: application/json");
        if (r < 0)
                return r;
        r = http_request_set_body(req, body, strlen(body));
        if (r < 0)
                return r;
        r = azure_start_request(a, req, azure_on_ack_done);
        if (r < 0)
                return r;
        a->ack = TAKE_PTR(req);
        return 0;
}

static int azure_on_ack_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        AzureWatch *a = userdata;
        usec_t wait = azure_gate(a);
        int r;

        if (a->ack || !a->acks || !a->acks[0])
                return 0;
        if (wait > 0) {
                azure_schedule_ack(a, wait);
                return 0;
        }
        r = azure_ack_issue(a);
        if (r < 0)
                azure_ack_failed(a, r, 0);
        return 0;
}

static void azure_on_ack_done(HttpRequest *req, int error, void *userdata) {
        AzureWatch *a = userdata;
        long status = http_request_status(req);

        assert(req == a->ack);
        a->ack = http_request_free(a->ack);
        if (error < 0) {
                azure_ack_failed(a, error, status);
                return;
        }
        azure_ack_log(a->acks[0], 0, status);
        azure_ack_next(a);
}

static int azure_acknowledge(CloudWatch *w, const char *notice_id) {
        AzureWatch *a = w->data;
        int r;

        if (!a)
                return -ENOTCONN;
        if (!azure_event_id_valid(notice_id))
                return -EINVAL;
        STRV_FOREACH(i, a->acks)
                if (streq(*i, notice_id))
                        return 0; /* already on its way */
        if (strv_length(a->acks) >= AZURE_ACK_QUEUE_MAX)
                return -ENOBUFS;
        r = strv_extend(&a->acks, notice_id);
        if (r < 0)
                return r;
        if (!a->ack && !timer_armed(a->ack_timer))
                azure_schedule_ack(a, 0);
        return 0;
}

static void azure_stop(CloudWatch *w) {
        AzureWatch *a = w->data;

        if (!a)
                return;
        http_request_free(a->poll);
        http_request_free(a->ack);
        sd_event_source_disable_unref(a->poll_timer);
        sd_event_source_disable_unref(a->ack_timer);
        strv_free(a->acks);
        w->data = mfree(a);
}

static int azure_start(CloudWatch *w) {
        AzureWatch *a;
        int r;

        if (w->data)
                return -EBUSY;
        a = calloc(1, sizeof(AzureWatch));
        if (!a)
                return -ENOMEM;
        *a = (AzureWatch) { .w = w };
        w->data = a;
        r = azure_poll_issue(a);
        if (r < 0)
                azure_poll_failed(a, r, 0, ": cannot start request");
        return 0;
}

const CloudProviderVTable cloud_azure = {
        .id = CLOUD_PROVIDER_AZURE,
        .name = "azure",
        .default_base_url = "http://169.254.169.254",
        .start = azure_start,
        .stop = azure_stop,
        .acknowledge = azure_acknowledge,
};

/* ---------------------------------------------------------------- managed identity */

struct AzureFetch {
        HttpRequest *req;
        AzureTokenHandler handler;
        void *userdata;
};

AzureFetch *azure_fetch_free(AzureFetch *f) {
        if (!f)
                return NULL;
        http_request_free(f->req);
        return mfree(f);
}

static void azure_fetch_on_done(HttpRequest *req, int error, void *userdata) {
        _cleanup_free_ char *token = NULL;
        AzureFetch *f = userdata;
        usec_t expires_in = 0;

        if (error >= 0) {
                size_t len;
                const char *body = http_request_body(req, &len);

                error = azure_parse_token(body, len, &token, &expires_in);
        }
        f->handler(f, error, token, expires_in, f->userdata); /* may free f */
        if (token)
                explicit_bzero(token, strlen(token));
}

int azure_fetch_token(CloudWatch *w, const char *resource, const char *client_id, AzureTokenHandler handler,
                      void *userdata, AzureFetch **ret) {
        _cleanup_(azure_fetch_freep) AzureFetch *f = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        r = azure_token_path(resource, client_id, &path);
        if (r < 0)
                return r;
        f = calloc(1, sizeof(AzureFetch));
        if (!f)
                return -ENOMEM;
        *f = (AzureFetch) { .handler = handler, .userdata = userdata };
        r = cloud_watch_request(w, "GET", path, &f->req);
        if (r < 0)
                return r;
        r = http_request_add_header(f->req, "Metadata: true");
        if (r < 0)
                return r;
        http_request_set_max_response(f->req, AZURE_TOKEN_MAX_RESPONSE);
        r = http_request_start(f->req, azure_fetch_on_done, f);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(f);
        return 0;
}
