/* SPDX-License-Identifier: MIT */
/* Session tokens, authenticated GETs and polled channels for the token-guarded metadata
 * services: AWS IMDSv2 and Alibaba's hardened mode, which copies it. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "cloud-imds.h"
#include "log.h"

bool imds_string_is_token(const char *s, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
                        return false;
        return true;
}

/* ---------------------------------------------------------------- IMDS session tokens */

int imds_parse_token(const char *body, size_t len, char **ret) {
        char *t;

        while (len > 0 && isspace((unsigned char) *body))
                body++, len--;
        while (len > 0 && isspace((unsigned char) body[len - 1]))
                len--;
        if (len > IMDS_TOKEN_MAX)
                return -EFBIG;
        if (!imds_string_is_token(body, len))
                return -EBADMSG;
        t = strndup(body, len);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

int imds_parse_ttl(const char *value, unsigned *ret) {
        unsigned long v;
        char *end;

        if (isempty(value) || !isdigit((unsigned char) *value))
                return -EBADMSG;
        errno = 0;
        v = strtoul(value, &end, 10);
        if (errno != 0 || *end || v < 1 || v > IMDS_TOKEN_TTL_SEC)
                return -EBADMSG;
        *ret = (unsigned) v;
        return 0;
}

struct ImdsSession {
        CloudWatch *w;
        const ImdsTokenScheme *scheme;
        char *token;
        unsigned token_gen;             /* bumped with each new token */
        usec_t token_refresh_at;        /* CLOCK_BOOTTIME: from here on, fetch a new one first */
        usec_t token_requested_at;
        bool token_verified;            /* a GET with it got an answer other than 401 */
        HttpRequest *token_req;         /* set while the PUT runs */
        sd_event_source *retry_timer;   /* armed while backing off */
        unsigned token_failures;        /* failed PUTs and 401s on fresh tokens since the last good GET */
        unsigned wake_epoch;
        ImdsGet *gets;                  /* every live get */
};

struct ImdsGet {
        ImdsSession *session;
        ImdsGet *prev, *next;
        char *path;
        long accept_status;
        bool fail_fast;
        ImdsGetDone done;
        void *userdata;

        HttpRequest *req;               /* kept between runs while the token is the same */
        unsigned req_gen;
        bool waiting;                   /* for a token */
        unsigned wait_epoch;
        bool retried;                   /* after a 401 */
};

static void imds_session_drop_token(ImdsSession *s) {
        if (s->token) {
                explicit_bzero(s->token, strlen(s->token));
                s->token = mfree(s->token);
        }
        s->token_refresh_at = 0;
        s->token_verified = false;
}

static bool imds_session_has_token(const ImdsSession *s) {
        return s->token && now_usec(CLOCK_BOOTTIME) < s->token_refresh_at;
}

static void imds_describe(char *buf, size_t size, const char *method, const char *path, long status, bool unusable) {
        if (unusable)
                snprintf(buf, size, "unusable answer to %s %s (HTTP %ld)", method, path, status);
        else if (status > 0)
                snprintf(buf, size, "%s %s answered HTTP %ld", method, path, status);
        else
                snprintf(buf, size, "%s %s got no answer", method, path);
}

static void imds_session_on_token(HttpRequest *req, int error, void *userdata);
static int imds_get_send(ImdsGet *g);

static int imds_session_fetch_token(ImdsSession *s) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int state = SD_EVENT_OFF, r;

        if (s->token_req)
                return 0;
        if (s->retry_timer && sd_event_source_get_enabled(s->retry_timer, &state) >= 0 && state != SD_EVENT_OFF)
                return 0; /* backing off: the timer fetches it */
        r = cloud_watch_request(s->w, "PUT", IMDS_TOKEN_PATH, &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "%s: %u", s->scheme->ttl_header, IMDS_TOKEN_TTL_SEC);
        if (r < 0)
                return r;
        http_request_set_max_response(req, 4096);
        s->token_requested_at = now_usec(CLOCK_BOOTTIME);
        r = http_request_start(req, imds_session_on_token, s);
        if (r < 0)
                return r;
        s->token_req = TAKE_PTR(req);
        return 0;
}

static ImdsGet *imds_session_next_waiter(ImdsSession *s, unsigned epoch, bool all) {
        for (ImdsGet *g = s->gets; g; g = g->next)
                if (g->waiting && g->wait_epoch != epoch && (all || g->fail_fast))
                        return g;
        return NULL;
}

static bool imds_session_has_waiters(const ImdsSession *s) {
        for (ImdsGet *g = s->gets; g; g = g->next)
                if (g->waiting)
                        return true;
        return false;
}

static int imds_session_on_retry(sd_event_source *es, uint64_t usec, void *userdata);

static int imds_session_arm_retry(ImdsSession *s) {
        return cloud_watch_arm(s->w, &s->retry_timer, cloud_watch_next_delay(s->w, s->token_failures),
                               imds_session_on_retry, s);
}

/* The token fetch ended. On success every waiting get is sent; on failure the fail_fast ones
 * complete with the error and the others wait for the next attempt. One get at a time, from the
 * head: a done callback may free or restart gets. Gets that start waiting meanwhile are left to
 * the next round. */
static void imds_session_wake(ImdsSession *s, int error) {
        unsigned epoch = ++s->wake_epoch;
        ImdsGet *g;
        int r;

        while ((g = imds_session_next_waiter(s, epoch, error >= 0))) {
                g->waiting = false;
                r = error;
                if (r >= 0) {
                        r = imds_get_send(g);
                        if (r >= 0)
                                continue;
                }
                g->done(g, r, NULL, g->userdata);
        }
        if (error >= 0 || !imds_session_has_waiters(s))
                return;
        r = imds_session_arm_retry(s);
        if (r < 0) {
                /* Nothing would wake them: let every waiter fail and back off on its own. */
                epoch = ++s->wake_epoch;
                while ((g = imds_session_next_waiter(s, epoch, true))) {
                        g->waiting = false;
                        g->done(g, r, NULL, g->userdata);
                }
        }
}

static void imds_session_token_failed(ImdsSession *s, int error, long status) {
        char what[128];

        imds_describe(what, sizeof(what), "PUT", IMDS_TOKEN_PATH, status, status >= 200 && status < 300);
        s->token_failures++;
        cloud_watch_condition(s->w, "token", error, what);
        imds_session_wake(s, error);
}

static void imds_session_on_token(HttpRequest *req, int error, void *userdata) {
        ImdsSession *s = userdata;
        _cleanup_(http_request_freep) HttpRequest *owned = TAKE_PTR(s->token_req);
        unsigned ttl = IMDS_TOKEN_TTL_SEC, echoed;
        char *token = NULL;
        const char *body;
        size_t len;
        usec_t life;

        if (error >= 0) {
                body = http_request_body(req, &len);
                error = imds_parse_token(body, len, &token);
                explicit_bzero((char *) body, len); /* our own buffer, freed below */
        }
        if (error < 0) {
                imds_session_token_failed(s, error, http_request_status(req));
                return;
        }
        if (imds_parse_ttl(http_request_header(req, s->scheme->ttl_header), &echoed) >= 0)
                ttl = MIN(ttl, echoed);
        life = (usec_t) ttl * USEC_PER_SEC;
        imds_session_drop_token(s);
        s->token = token;
        s->token_gen++;
        s->token_refresh_at = s->token_requested_at + life - MIN(IMDS_TOKEN_REFRESH_USEC, life / 2);
        log_debug("%s metadata: new session token, valid for %u s", cloud_watch_name(s->w), ttl);
        cloud_watch_condition(s->w, "token", 0, NULL);
        imds_session_wake(s, 0);
}

static int imds_session_on_retry(sd_event_source *es, uint64_t usec, void *userdata) {
        ImdsSession *s = userdata;
        int r;

        if (!imds_session_has_waiters(s))
                return 0;
        r = imds_session_fetch_token(s);
        if (r < 0)
                imds_session_token_failed(s, r, 0);
        return 0;
}

int imds_session_new(ImdsSession **ret, CloudWatch *w, const ImdsTokenScheme *scheme) {
        ImdsSession *s;

        s = calloc(1, sizeof(ImdsSession));
        if (!s)
                return -ENOMEM;
        *s = (ImdsSession) { .w = w, .scheme = scheme };
        *ret = s;
        return 0;
}

ImdsSession *imds_session_free(ImdsSession *s) {
        if (!s)
                return NULL;
        while (s->gets) {
                ImdsGet *g = s->gets;

                s->gets = g->next;
                http_request_cancel(g->req);
                g->session = NULL;
                g->prev = g->next = NULL;
                g->waiting = false;
        }
        http_request_free(s->token_req);
        sd_event_source_disable_unref(s->retry_timer);
        imds_session_drop_token(s);
        return mfree(s);
}

/* ---------------------------------------------------------------- IMDS GETs */

static void imds_get_on_answer(HttpRequest *req, int error, void *userdata);

static int imds_get_send(ImdsGet *g) {
        ImdsSession *s = g->session;
        int r;

        if (!g->req || g->req_gen != s->token_gen) {
                _cleanup_(http_request_freep) HttpRequest *req = NULL;

                r = cloud_watch_request(s->w, "GET", g->path, &req);
                if (r < 0)
                        return r;
                r = http_request_add_header(req, "%s: %s", s->scheme->token_header, s->token);
                if (r < 0)
                        return r;
                if (g->accept_status > 0)
                        http_request_set_accept_status(req, g->accept_status);
                http_request_free(g->req);
                g->req = TAKE_PTR(req);
                g->req_gen = s->token_gen;
        }
        return http_request_start(g->req, imds_get_on_answer, g);
}

static int imds_get_submit(ImdsGet *g) {
        ImdsSession *s = g->session;
        int r;

        if (imds_session_has_token(s))
                return imds_get_send(g);
        g->waiting = true;
        g->wait_epoch = s->wake_epoch;
        r = imds_session_fetch_token(s);
        if (r < 0)
                g->waiting = false;
        return r;
}

static void imds_get_on_answer(HttpRequest *req, int error, void *userdata) {
        ImdsGet *g = userdata;
        ImdsSession *s = g->session;
        int r;

        if (s && error == -EACCES && http_request_status(req) == 401) {
                /* The token expired or was revoked: a new one at once, and one more try. A token
                 * that never worked is not fetched again at once but after the token back-off,
                 * lest a server that rejects every token gets a PUT for each GET. */
                if (s->token && g->req_gen == s->token_gen) {
                        bool verified = s->token_verified;

                        imds_session_drop_token(s);
                        if (!verified) {
                                s->token_failures++;
                                (void) imds_session_arm_retry(s);
                        }
                }
                if (!g->retried) {
                        g->retried = true;
                        r = imds_get_submit(g);
                        if (r >= 0)
                                return;
                        g->done(g, r, NULL, g->userdata);
                        return;
                }
        }
        if (s && s->token && g->req_gen == s->token_gen && http_request_status(req) > 0) {
                s->token_verified = true;
                s->token_failures = 0;
        }
        g->done(g, error, req, g->userdata);
}

int imds_get_new(ImdsGet **ret, ImdsSession *s, const char *path, bool fail_fast, ImdsGetDone done,
                 void *userdata) {
        ImdsGet *g;

        g = calloc(1, sizeof(ImdsGet));
        if (!g)
                return -ENOMEM;
        *g = (ImdsGet) { .session = s, .fail_fast = fail_fast, .done = done, .userdata = userdata };
        g->path = strdup(path);
        if (!g->path) {
                free(g);
                return -ENOMEM;
        }
        g->next = s->gets;
        if (s->gets)
                s->gets->prev = g;
        s->gets = g;
        *ret = g;
        return 0;
}

void imds_get_set_accept_status(ImdsGet *g, long status) {
        g->accept_status = status;
        g->req = http_request_free(g->req);
}

bool imds_get_busy(const ImdsGet *g) {
        return g->waiting || (g->req && http_request_running(g->req));
}

int imds_get_start(ImdsGet *g) {
        if (!g->session)
                return -ESTALE;
        if (imds_get_busy(g))
                return -EBUSY;
        g->retried = false;
        return imds_get_submit(g);
}

ImdsGet *imds_get_free(ImdsGet *g) {
        if (!g)
                return NULL;
        if (g->session) {
                if (g->prev)
                        g->prev->next = g->next;
                else
                        g->session->gets = g->next;
                if (g->next)
                        g->next->prev = g->prev;
        }
        http_request_free(g->req);
        free(g->path);
        return mfree(g);
}

/* ---------------------------------------------------------------- polling */

struct ImdsPoller {
        CloudWatch *w;
        const char *channel;
        ImdsGet *get;
        sd_event_source *timer;
        unsigned failures;
        bool once;
        ImdsPollAnswer answer;
        void *userdata;
};

static int imds_poller_on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void imds_poller_schedule(ImdsPoller *p, usec_t delay) {
        int r = cloud_watch_arm(p->w, &p->timer, delay, imds_poller_on_timer, p);

        if (r < 0)
                (void) log_error_errno(r, "Cannot arm the %s metadata poll (%s), this channel stops: %m",
                                       cloud_watch_name(p->w), p->channel);
}

static void imds_poller_failed(ImdsPoller *p, int error, const char *what) {
        p->failures++;
        cloud_watch_condition(p->w, p->channel, error, what);
        imds_poller_schedule(p, cloud_watch_next_delay(p->w, p->failures));
}

static void imds_poller_poll(ImdsPoller *p) {
        char what[256];
        int r;

        r = imds_get_start(p->get);
        if (r < 0) {
                snprintf(what, sizeof(what), "cannot send GET %s", p->get->path);
                imds_poller_failed(p, r, what);
        }
}

static int imds_poller_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        imds_poller_poll(userdata);
        return 0;
}

static void imds_poller_on_done(ImdsGet *g, int error, HttpRequest *req, void *userdata) {
        ImdsPoller *p = userdata;
        long status = req ? http_request_status(req) : 0;
        const char *body;
        char what[256];
        size_t len;

        if (error >= 0) {
                body = http_request_body(req, &len);
                error = p->answer(p->w, p->channel, status, body, len, p->userdata);
                if (error < 0) {
                        imds_describe(what, sizeof(what), "GET", g->path, status, true);
                        imds_poller_failed(p, error, what);
                        return;
                }
        } else {
                imds_describe(what, sizeof(what), "GET", g->path, status, false);
                imds_poller_failed(p, error, what);
                return;
        }
        p->failures = 0;
        cloud_watch_condition(p->w, p->channel, 0, NULL);
        if (!p->once)
                imds_poller_schedule(p, p->w->poll_interval);
}

int imds_poller_new(ImdsPoller **ret, ImdsSession *s, const char *channel, const char *path, long accept_status,
                    bool once, ImdsPollAnswer answer, void *userdata) {
        _cleanup_(imds_poller_freep) ImdsPoller *p = NULL;
        int r;

        p = calloc(1, sizeof(ImdsPoller));
        if (!p)
                return -ENOMEM;
        *p = (ImdsPoller) { .w = s->w, .channel = channel, .once = once, .answer = answer, .userdata = userdata };
        r = imds_get_new(&p->get, s, path, false, imds_poller_on_done, p);
        if (r < 0)
                return r;
        if (accept_status > 0)
                imds_get_set_accept_status(p->get, accept_status);
        *ret = TAKE_PTR(p);
        return 0;
}

int imds_poller_start(ImdsPoller *p) {
        imds_poller_poll(p);
        return 0;
}

ImdsPoller *imds_poller_free(ImdsPoller *p) {
        if (!p)
                return NULL;
        imds_get_free(p->get);
        sd_event_source_disable_unref(p->timer);
        return mfree(p);
}
