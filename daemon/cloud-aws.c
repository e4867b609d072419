/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "cloud-aws.h"
#include "json-util.h"
#include "log.h"

/* ---------------------------------------------------------------- JSON helpers */

/* Exactly one JSON value (white space around it allowed, NUL bytes not). */
static int json_parse_body(const char *body, size_t len, cJSON **ret) {
        cJSON *j = json_parse_exact(body, len);

        if (!j)
                return -EBADMSG;
        *ret = j;
        return 0;
}

/* 0 and a borrowed string, -ENOENT when absent or null, -EBADMSG for another type. */
static int json_string_member(const cJSON *o, const char *key, const char **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!v || cJSON_IsNull(v))
                return -ENOENT;
        if (!cJSON_IsString(v) || !v->valuestring)
                return -EBADMSG;
        *ret = v->valuestring;
        return 0;
}

static int json_required_string(const cJSON *o, const char *key, const char **ret) {
        int r = json_string_member(o, key, ret);

        return r == -ENOENT ? -EBADMSG : r;
}

/* Overwrites every string in the tree before freeing it: for bodies with secrets. */
static void json_wipe(cJSON *j) {
        for (; j; j = j->next) {
                if (j->valuestring)
                        explicit_bzero(j->valuestring, strlen(j->valuestring));
                json_wipe(j->child);
        }
}

static void json_wipe_and_deletep(cJSON **j) {
        if (*j) {
                json_wipe(*j);
                cJSON_Delete(*j);
                *j = NULL;
        }
}

static int copy_limited(char *dst, size_t size, const char *src) {
        size_t n = strlen(src);

        if (n >= size)
                return -EFBIG;
        memcpy(dst, src, n + 1);
        return 0;
}

static bool string_all(const char *s, const char *allowed_punct, bool lower_only) {
        if (isempty(s))
                return false;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c >= 0x80 || !(isdigit(c) || islower(c) || (!lower_only && isupper(c)) ||
                                   (c && strchr(allowed_punct, c))))
                        return false;
        }
        return true;
}

static int parse_iso_time(const char *s, usec_t *ret) {
        if (strlen(s) > AWS_TIME_STRING_MAX)
                return -EFBIG;
        return parse_rfc3339(s, ret) < 0 ? -EBADMSG : 0;
}

/* Scheduled-event times: "21 Jan 2019 09:00:43 GMT"; RFC 3339 too; blank = none. */
static int parse_event_time(const char *s, usec_t *ret) {
        if (isempty(s)) {
                *ret = USEC_INFINITY;
                return 0;
        }
        if (strlen(s) > AWS_TIME_STRING_MAX)
                return -EFBIG;
        if (parse_http_date(s, ret) >= 0 || parse_rfc3339(s, ret) >= 0)
                return 0;
        return -EBADMSG;
}

/* ---------------------------------------------------------------- AWS parsers */

static const char *const aws_spot_action_table[_AWS_SPOT_ACTION_MAX] = {
        [AWS_SPOT_TERMINATE] = "terminate",
        [AWS_SPOT_STOP] = "stop",
        [AWS_SPOT_HIBERNATE] = "hibernate",
        [AWS_SPOT_OTHER] = "other",
};

const char *aws_spot_action_to_string(AwsSpotAction a) {
        return a >= 0 && a < _AWS_SPOT_ACTION_MAX ? aws_spot_action_table[a] : NULL;
}

AwsSpotAction aws_spot_action_from_string(const char *s) {
        for (AwsSpotAction a = 0; s && a < _AWS_SPOT_ACTION_MAX; a++)
                if (streq(aws_spot_action_table[a], s))
                        return a;
        return _AWS_SPOT_ACTION_INVALID;
}

int aws_parse_instance_action(const char *body, size_t len, AwsInstanceAction *ret) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        AwsInstanceAction a = {};
        const char *action, *time;
        int r;

        r = json_parse_body(body, len, &j);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(j))
                return -EBADMSG;
        r = json_required_string(j, "action", &action);
        if (r < 0)
                return r;
        r = json_required_string(j, "time", &time);
        if (r < 0)
                return r;
        r = copy_limited(a.action_name, sizeof(a.action_name), action);
        if (r < 0)
                return r;
        if (!string_all(action, "-_", false))
                return -EBADMSG;
        a.action = aws_spot_action_from_string(action);
        if (a.action < 0)
                a.action = AWS_SPOT_OTHER;
        r = parse_iso_time(time, &a.time);
        if (r < 0)
                return r;
        *ret = a;
        return 0;
}

int aws_parse_rebalance(const char *body, size_t len, usec_t *ret_notice_time) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        const char *s;
        usec_t t;
        int r;

        r = json_parse_body(body, len, &j);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(j))
                return -EBADMSG;
        r = json_required_string(j, "noticeTime", &s);
        if (r < 0)
                return r;
        r = parse_iso_time(s, &t);
        if (r < 0)
                return r;
        *ret_notice_time = t;
        return 0;
}

static AwsEventState aws_event_state_from_string(const char *s) {
        if (strcasecmp(s, "active") == 0)
                return AWS_EVENT_ACTIVE;
        if (strcasecmp(s, "completed") == 0)
                return AWS_EVENT_COMPLETED;
        if (strcasecmp(s, "canceled") == 0 || strcasecmp(s, "cancelled") == 0)
                return AWS_EVENT_CANCELED;
        return AWS_EVENT_OTHER;
}

static int json_event_time(const cJSON *o, const char *key, usec_t *ret) {
        const char *s;
        int r;

        r = json_string_member(o, key, &s);
        if (r == -ENOENT) {
                *ret = USEC_INFINITY;
                return 0;
        }
        if (r < 0)
                return r;
        return parse_event_time(s, ret);
}

static int aws_parse_scheduled_event(const cJSON *o, AwsScheduledEvent *ret) {
        AwsScheduledEvent e = {};
        const char *s;
        int r;

        if (!cJSON_IsObject(o))
                return -EBADMSG;
        r = json_required_string(o, "EventId", &s);
        if (r < 0)
                return r;
        r = copy_limited(e.event_id, sizeof(e.event_id), s);
        if (r < 0)
                return r;
        if (!imds_string_is_token(s, strlen(s)))
                return -EBADMSG;
        r = json_required_string(o, "State", &s);
        if (r < 0)
                return r;
        e.state = aws_event_state_from_string(s);
        r = json_string_member(o, "Code", &s);
        if (r >= 0)
                r = copy_limited(e.code, sizeof(e.code), s);
        if (r < 0 && r != -ENOENT)
                return r;
        r = json_string_member(o, "Description", &s);
        if (r >= 0)
                notice_set_string(e.description, sizeof(e.description), s);
        else if (r != -ENOENT)
                return r;
        r = json_event_time(o, "NotBefore", &e.not_before);
        if (r >= 0)
                r = json_event_time(o, "NotAfter", &e.not_after);
        if (r >= 0)
                r = json_event_time(o, "NotBeforeDeadline", &e.not_before_deadline);
        if (r < 0)
                return r;
        *ret = e;
        return 0;
}

int aws_parse_scheduled_events(const char *body, size_t len, size_t max, AwsScheduledEvent *ret_events) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        _cleanup_free_ AwsScheduledEvent *tmp = NULL;
        const cJSON *o;
        size_t n = 0;
        int r;

        while (len > 0 && isspace((unsigned char) *body))
                body++, len--;
        if (len == 0)
                return 0; /* nothing scheduled, said tersely */
        r = json_parse_body(body, len, &j);
        if (r < 0)
                return r;
        if (!cJSON_IsArray(j))
                return -EBADMSG;
        if ((size_t) cJSON_GetArraySize(j) > max)
                return -EFBIG;
        if (max > 0) {
                tmp = calloc(max, sizeof(AwsScheduledEvent));
                if (!tmp)
                        return -ENOMEM;
        }
        cJSON_ArrayForEach(o, j) {
                r = aws_parse_scheduled_event(o, &tmp[n]);
                if (r < 0)
                        return r;
                n++;
        }
        if (n > 0)
                memcpy(ret_events, tmp, n * sizeof(AwsScheduledEvent));
        return (int) n;
}

int aws_parse_identity(const char *body, size_t len, AwsIdentity *ret) {
        _cleanup_(cJSON_Deletep) cJSON *j = NULL;
        AwsIdentity id = {};
        const char *s;
        int r;

        r = json_parse_body(body, len, &j);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(j))
                return -EBADMSG;
        r = json_required_string(j, "region", &s);
        if (r >= 0)
                r = copy_limited(id.region, sizeof(id.region), s);
        if (r < 0)
                return r;
        if (!string_all(s, "-", true))
                return -EBADMSG;
        r = json_required_string(j, "instanceId", &s);
        if (r >= 0)
                r = copy_limited(id.instance_id, sizeof(id.instance_id), s);
        if (r < 0)
                return r;
        if (!string_all(s, "-", true))
                return -EBADMSG;
        r = json_string_member(j, "availabilityZone", &s);
        if (r >= 0)
                r = copy_limited(id.availability_zone, sizeof(id.availability_zone), s);
        if (r < 0 && r != -ENOENT)
                return r;
        r = json_string_member(j, "accountId", &s);
        if (r >= 0)
                r = copy_limited(id.account_id, sizeof(id.account_id), s);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = id;
        return 0;
}

void aws_credentials_done(AwsCredentials *c) {
        char **f[] = { &c->access_key_id, &c->secret_access_key, &c->token };

        for (size_t i = 0; i < ELEMENTSOF(f); i++)
                if (*f[i]) {
                        explicit_bzero(*f[i], strlen(*f[i]));
                        *f[i] = mfree(*f[i]);
                }
        c->expiration = USEC_INFINITY;
}

int aws_parse_role_list(const char *body, size_t len, char **ret_role) {
        size_t i = 0, start, end;
        char *role;

        while (i < len && isspace((unsigned char) body[i]))
                i++;
        if (i == len)
                return -ENOENT;
        start = i;
        while (i < len && body[i] != '\n' && body[i] != '\r')
                i++;
        end = i;
        while (end > start && isspace((unsigned char) body[end - 1]))
                end--;
        /* IAM role names: 1..64 of [A-Za-z0-9+=,.@_-]; the name goes into a path. */
        if (end - start > 64)
                return -EBADMSG;
        for (i = start; i < end; i++) {
                unsigned char c = (unsigned char) body[i];

                if (c >= 0x80 || c == 0 || !(isalnum(c) || strchr("+=,.@_-", c)))
                        return -EBADMSG;
        }
        role = strndup(body + start, end - start);
        if (!role)
                return -ENOMEM;
        *ret_role = role;
        return 0;
}

static int credentials_string(const cJSON *j, const char *key, bool required, size_t max, char **ret) {
        const char *s;
        int r;

        r = json_string_member(j, key, &s);
        if (r == -ENOENT && !required) {
                *ret = NULL;
                return 0;
        }
        if (r < 0)
                return r == -ENOENT ? -EBADMSG : r;
        if (strlen(s) > max)
                return -EFBIG;
        if (isempty(s)) {
                if (required)
                        return -EBADMSG;
                *ret = NULL;
                return 0;
        }
        if (!imds_string_is_token(s, strlen(s)))
                return -EBADMSG;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int aws_parse_credentials(const char *body, size_t len, AwsCredentials *ret) {
        _cleanup_(json_wipe_and_deletep) cJSON *j = NULL;
        _cleanup_(aws_credentials_done) AwsCredentials c = { .expiration = USEC_INFINITY };
        const char *s;
        int r;

        r = json_parse_body(body, len, &j);
        if (r < 0)
                return r;
        if (!cJSON_IsObject(j))
                return -EBADMSG;
        r = json_string_member(j, "Code", &s);
        if (r >= 0 && !streq(s, "Success"))
                return -ENOKEY;
        if (r < 0 && r != -ENOENT)
                return r;
        r = credentials_string(j, "AccessKeyId", true, 128, &c.access_key_id);
        if (r >= 0)
                r = credentials_string(j, "SecretAccessKey", true, 256, &c.secret_access_key);
        if (r >= 0)
                r = credentials_string(j, "Token", false, 16384, &c.token);
        if (r < 0)
                return r;
        r = json_string_member(j, "Expiration", &s);
        if (r >= 0)
                r = parse_iso_time(s, &c.expiration);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = c;
        c = (AwsCredentials) {};
        return 0;
}

/* ---------------------------------------------------------------- notices */

void aws_instance_action_to_notice(const AwsInstanceAction *a, Notice *ret) {
        *ret = (Notice) { .provider = CLOUD_PROVIDER_AWS, .kind = NOTICE_SPOT_INTERRUPTION, .deadline = a->time,
                          .imminent = true };
        notice_set_string(ret->id, sizeof(ret->id), AWS_SPOT_NOTICE_ID);
        snprintf(ret->summary, sizeof(ret->summary), "spot instance-action %s", a->action_name);
}

void aws_rebalance_to_notice(usec_t notice_time, Notice *ret) {
        char when[RFC3339_MAX];

        *ret = (Notice) { .provider = CLOUD_PROVIDER_AWS, .kind = NOTICE_REBALANCE, .deadline = USEC_INFINITY };
        notice_set_string(ret->id, sizeof(ret->id), AWS_REBALANCE_NOTICE_ID);
        snprintf(ret->summary, sizeof(ret->summary), "rebalance recommendation issued %s",
                 format_rfc3339(when, notice_time));
}

bool aws_scheduled_event_to_notice(const AwsScheduledEvent *e, Notice *ret) {
        char until[RFC3339_MAX], summary[sizeof(e->code) + sizeof(e->description) + RFC3339_MAX + 64];

        if (e->state != AWS_EVENT_ACTIVE)
                return false;
        *ret = (Notice) { .provider = CLOUD_PROVIDER_AWS, .kind = NOTICE_MAINTENANCE, .deadline = e->not_before };
        notice_set_string(ret->id, sizeof(ret->id), e->event_id);
        if (e->not_after != USEC_INFINITY)
                format_rfc3339(until, e->not_after);
        snprintf(summary, sizeof(summary), "scheduled %s%s%s%s%s", e->code[0] ? e->code : "event",
                 e->not_after != USEC_INFINITY ? ", not after " : "", e->not_after != USEC_INFINITY ? until : "",
                 e->description[0] ? ": " : "", e->description);
        notice_set_string(ret->summary, sizeof(ret->summary), summary); /* shortened */
        return true;
}

/* ---------------------------------------------------------------- the AWS provider */

typedef struct AwsCredentialsFetch AwsCredentialsFetch;

typedef enum AwsChannel {
        AWS_CHANNEL_SPOT,
        AWS_CHANNEL_REBALANCE,
        AWS_CHANNEL_MAINTENANCE,
        AWS_CHANNEL_IDENTITY,
        _AWS_CHANNEL_MAX,
} AwsChannel;

typedef struct AwsWatch {
        CloudWatch *w;
        ImdsSession *session;
        ImdsPoller *pollers[_AWS_CHANNEL_MAX];
        AwsIdentity identity;
        bool has_identity;
        AwsCredentialsFetch *fetches;
        unsigned spot_misses;   /* consecutive 404s on spot/instance-action while a notice is known */
} AwsWatch;

struct AwsCredentialsFetch {
        AwsWatch *aws;
        AwsCredentialsFetch *next;
        ImdsGet *get;
        bool have_role;
        AwsCredentialsDone done;
        void *userdata;
};

#define AWS_SPOT_MISSES_TO_WITHDRAW 2U

static const ImdsTokenScheme aws_token_scheme = {
        .ttl_header = "X-aws-ec2-metadata-token-ttl-seconds",
        .token_header = "X-aws-ec2-metadata-token",
};

static bool aws_spot_known(const CloudWatch *w) {
        for (size_t i = 0; i < w->n_known; i++)
                if (streq(w->known[i].id, AWS_SPOT_NOTICE_ID))
                        return true;
        return false;
}

static int aws_on_spot(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                       void *userdata) {
        AwsWatch *aws = userdata;
        AwsInstanceAction a;
        Notice n;
        int r;

        if (status == 404) {
                /* AWS never takes an instance-action back: one stray 404 must not withdraw an
                 * interruption (and announce it again a poll later). Two in a row do. */
                if (aws_spot_known(w) && ++aws->spot_misses < AWS_SPOT_MISSES_TO_WITHDRAW)
                        return 0;
                aws->spot_misses = 0;
                cloud_watch_update(w, channel, NULL, 0);
                return 0;
        }
        aws->spot_misses = 0;
        r = aws_parse_instance_action(body, len, &a);
        if (r < 0)
                return r;
        aws_instance_action_to_notice(&a, &n);
        cloud_watch_update(w, channel, &n, 1);
        return 0;
}

static int aws_on_rebalance(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                            void *userdata) {
        usec_t t;
        Notice n;
        int r;

        if (status == 404) {
                cloud_watch_update(w, channel, NULL, 0);
                return 0;
        }
        r = aws_parse_rebalance(body, len, &t);
        if (r < 0)
                return r;
        aws_rebalance_to_notice(t, &n);
        cloud_watch_update(w, channel, &n, 1);
        return 0;
}

static int aws_on_maintenance(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                              void *userdata) {
        _cleanup_free_ AwsScheduledEvent *events = NULL;
        _cleanup_free_ Notice *notices = NULL;
        size_t n = 0;
        int r;

        if (status == 404) {
                cloud_watch_update(w, channel, NULL, 0);
                return 0;
        }
        events = calloc(AWS_SCHEDULED_EVENTS_MAX, sizeof(AwsScheduledEvent));
        notices = calloc(AWS_SCHEDULED_EVENTS_MAX, sizeof(Notice));
        if (!events || !notices)
                return -ENOMEM;
        r = aws_parse_scheduled_events(body, len, AWS_SCHEDULED_EVENTS_MAX, events);
        if (r < 0)
                return r;
        for (int i = 0; i < r; i++)
                if (aws_scheduled_event_to_notice(&events[i], &notices[n]))
                        n++;
        cloud_watch_update(w, channel, notices, n);
        return 0;
}

static int aws_on_identity(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                           void *userdata) {
        AwsWatch *a = userdata;
        int r;

        r = aws_parse_identity(body, len, &a->identity);
        if (r < 0)
                return r;
        a->has_identity = true;
        log_debug("AWS instance %s in %s", a->identity.instance_id, a->identity.region);
        return 0;
}

static const struct {
        const char *channel;
        const char *path;
        long accept_status;
        bool once;
        ImdsPollAnswer answer;
} aws_channels[_AWS_CHANNEL_MAX] = {
        [AWS_CHANNEL_SPOT] = { "spot", AWS_PATH_SPOT, 404, false, aws_on_spot },
        [AWS_CHANNEL_REBALANCE] = { "rebalance", AWS_PATH_REBALANCE, 404, false, aws_on_rebalance },
        [AWS_CHANNEL_MAINTENANCE] = { "maintenance", AWS_PATH_MAINTENANCE, 404, false, aws_on_maintenance },
        [AWS_CHANNEL_IDENTITY] = { "identity", AWS_PATH_IDENTITY, 0, true, aws_on_identity },
};

static AwsCredentialsFetch *aws_fetch_free(AwsCredentialsFetch *f) {
        if (!f)
                return NULL;
        imds_get_free(f->get);
        return mfree(f);
}

static void aws_fetch_unlink(AwsCredentialsFetch *f) {
        for (AwsCredentialsFetch **p = &f->aws->fetches; *p; p = &(*p)->next)
                if (*p == f) {
                        *p = f->next;
                        return;
                }
}

static void aws_fetch_finish(AwsCredentialsFetch *f, int error, const AwsCredentials *c) {
        CloudWatch *w = f->aws->w;
        AwsCredentialsDone done = f->done;
        void *userdata = f->userdata;

        aws_fetch_unlink(f);
        aws_fetch_free(f); /* also frees the get whose callback we are in: allowed */
        done(w, error, c, userdata);
}

static void aws_fetch_on_answer(ImdsGet *g, int error, HttpRequest *req, void *userdata);

static int aws_fetch_role(AwsCredentialsFetch *f, const char *role) {
        _cleanup_free_ char *path = NULL;
        ImdsGet *g;
        int r;

        if (asprintf(&path, "%s%s", AWS_PATH_ROLES, role) < 0)
                return -ENOMEM;
        r = imds_get_new(&g, f->aws->session, path, true, aws_fetch_on_answer, f);
        if (r < 0)
                return r;
        imds_get_free(f->get);
        f->get = g;
        f->have_role = true;
        return imds_get_start(g);
}

static void aws_fetch_on_answer(ImdsGet *g, int error, HttpRequest *req, void *userdata) {
        AwsCredentialsFetch *f = userdata;
        _cleanup_(aws_credentials_done) AwsCredentials c = {};
        _cleanup_free_ char *role = NULL;
        const char *body;
        size_t len;
        int r;

        if (error < 0) {
                aws_fetch_finish(f, error, NULL);
                return;
        }
        body = http_request_body(req, &len);
        if (!f->have_role) {
                r = aws_parse_role_list(body, len, &role);
                if (r >= 0)
                        r = aws_fetch_role(f, role);
                if (r < 0)
                        aws_fetch_finish(f, r, NULL);
                return;
        }
        r = aws_parse_credentials(body, len, &c);
        explicit_bzero((char *) body, len); /* the request's own buffer, freed with it */
        aws_fetch_finish(f, r, r >= 0 ? &c : NULL);
}

static AwsWatch *aws_watch_of(CloudWatch *w) {
        return w && w->vtable == &cloud_aws ? w->data : NULL;
}

int cloud_aws_fetch_credentials(CloudWatch *w, AwsCredentialsDone done, void *userdata) {
        AwsCredentialsFetch *f;
        AwsWatch *a;
        int r;

        if (!w || w->vtable != &cloud_aws || !done)
                return -EOPNOTSUPP;
        a = aws_watch_of(w);
        if (!a)
                return -ENOTCONN;
        f = calloc(1, sizeof(AwsCredentialsFetch));
        if (!f)
                return -ENOMEM;
        *f = (AwsCredentialsFetch) { .aws = a, .done = done, .userdata = userdata };
        r = imds_get_new(&f->get, a->session, AWS_PATH_ROLES, true, aws_fetch_on_answer, f);
        if (r >= 0)
                r = imds_get_start(f->get);
        if (r < 0) {
                aws_fetch_free(f);
                return r;
        }
        f->next = a->fetches;
        a->fetches = f;
        return 0;
}

void cloud_aws_cancel_credentials(CloudWatch *w, void *userdata) {
        AwsWatch *a = aws_watch_of(w);

        for (AwsCredentialsFetch **p = a ? &a->fetches : NULL; p && *p;) {
                AwsCredentialsFetch *f = *p;

                if (f->userdata != userdata) {
                        p = &f->next;
                        continue;
                }
                *p = f->next;
                aws_fetch_free(f);
        }
}

const char *cloud_aws_region(CloudWatch *w) {
        AwsWatch *a = aws_watch_of(w);

        return a && a->has_identity ? a->identity.region : NULL;
}

const char *cloud_aws_instance_id(CloudWatch *w) {
        AwsWatch *a = aws_watch_of(w);

        return a && a->has_identity ? a->identity.instance_id : NULL;
}

static AwsWatch *aws_watch_free(AwsWatch *a) {
        if (!a)
                return NULL;
        while (a->fetches) {
                AwsCredentialsFetch *f = a->fetches;

                a->fetches = f->next;
                aws_fetch_free(f);
        }
        for (size_t i = 0; i < ELEMENTSOF(a->pollers); i++)
                imds_poller_free(a->pollers[i]);
        imds_session_free(a->session);
        return mfree(a);
}
DEFINE_CLEANUP_FUNC(AwsWatch *, aws_watch_free);

static int aws_start(CloudWatch *w) {
        _cleanup_(aws_watch_freep) AwsWatch *a = NULL;
        int r;

        if (w->data)
                return -EBUSY;
        a = calloc(1, sizeof(AwsWatch));
        if (!a)
                return -ENOMEM;
        a->w = w;
        r = imds_session_new(&a->session, w, &aws_token_scheme);
        if (r < 0)
                return r;
        for (size_t i = 0; i < _AWS_CHANNEL_MAX; i++) {
                r = imds_poller_new(&a->pollers[i], a->session, aws_channels[i].channel, aws_channels[i].path,
                                    aws_channels[i].accept_status, aws_channels[i].once, aws_channels[i].answer, a);
                if (r < 0)
                        return r;
        }
        /* All four wait for the first token, then go out together. */
        for (size_t i = 0; i < _AWS_CHANNEL_MAX; i++) {
                r = imds_poller_start(a->pollers[i]);
                if (r < 0)
                        return r;
        }
        w->data = TAKE_PTR(a);
        return 0;
}

static void aws_stop(CloudWatch *w) {
        w->data = aws_watch_free(w->data);
}

const CloudProviderVTable cloud_aws = {
        .id = CLOUD_PROVIDER_AWS,
        .name = "aws",
        .default_base_url = "http://169.254.169.254",
        .start = aws_start,
        .stop = aws_stop,
};
