/* SPDX-License-Identifier: MIT */
#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "log.h"

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *defer;
        CurlGlueFinished on_finished;
};

DEFINE_CLEANUP_FUNC(CURL *, curl_easy_cleanup);

static int curl_glue_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running = 0;

        if ((revents & (EPOLLIN | EPOLLOUT)) == (EPOLLIN | EPOLLOUT))
                action = CURL_POLL_INOUT;
        else if (revents & EPOLLIN)
                action = CURL_POLL_IN;
        else if (revents & EPOLLOUT)
                action = CURL_POLL_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;

        if (curl_multi_socket_action(g->multi, fd, action, &running) != CURLM_OK)
                log_debug("curl_multi_socket_action() failed");
        return sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT);
}

static int curl_glue_on_socket(CURL *curl, curl_socket_t fd, int action, void *userp, void *socketp) {
        sd_event_source *io = socketp;
        CurlGlue *g = userp;
        uint32_t events = 0;
        int r;

        if (action == CURL_POLL_REMOVE) {
                if (io) {
                        (void) sd_event_source_set_enabled(io, SD_EVENT_OFF);
                        sd_event_source_unref(io);
                        (void) curl_multi_assign(g->multi, fd, NULL);
                }
                return 0;
        }
        if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(io, SD_EVENT_ON);
                return r < 0 ? -1 : 0;
        }
        r = sd_event_add_io(g->event, &io, fd, events, curl_glue_on_io, g);
        if (r < 0)
                return -1;
        (void) sd_event_source_set_description(io, "curl-io");
        if (curl_multi_assign(g->multi, fd, io) != CURLM_OK) {
                sd_event_source_unref(io);
                return -1;
        }
        return 0;
}

static int curl_glue_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running = 0;

        if (curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running) != CURLM_OK)
                log_debug("curl_multi_socket_action(timeout) failed");
        return sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT);
}

static int curl_glue_on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        usec_t usec;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;

        usec = (usec_t) timeout_ms * USEC_PER_MSEC + 1;
        if (sd_event_source_set_time_relative(g->timer, usec) < 0)
                return -1;
        return sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

static int curl_glue_on_defer(sd_event_source *s, void *userdata) {
        CurlGlue *g = userdata;
        CURLMsg *msg;
        int left;

        /* One message per iteration: a finished callback may free objects or add transfers. */
        msg = curl_multi_info_read(g->multi, &left);
        if (!msg)
                return 0;
        if (msg->msg == CURLMSG_DONE) {
                CURL *curl = msg->easy_handle;
                CURLcode result = msg->data.result;

                (void) curl_multi_remove_handle(g->multi, curl);
                g->on_finished(g, curl, result);
        }
        return sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT);
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        if (g->multi)
                curl_multi_cleanup(g->multi);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->defer);
        sd_event_unref(g->event);
        return mfree(g);
}

int curl_glue_new(CurlGlue **ret, sd_event *event, CurlGlueFinished on_finished) {
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;
        int r;

        g = calloc(1, sizeof(CurlGlue));
        if (!g)
                return -ENOMEM;
        *g = (CurlGlue) { .event = sd_event_ref(event), .on_finished = on_finished };

        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;
        r = sd_event_add_time_relative(event, &g->timer, CLOCK_BOOTTIME, USEC_PER_SEC, 1,
                                       curl_glue_on_timer, g);
        if (r < 0)
                return r;
        /* Accuracy 0 would mean sd-event's default slack of 250 ms on every curl timeout. */
        r = sd_event_source_set_time_accuracy(g->timer, 1);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(g->timer, "curl-timer");
        r = sd_event_add_defer(event, &g->defer, curl_glue_on_defer, g);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(g->defer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(g->defer, "curl-defer");

        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, curl_glue_on_socket) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, curl_glue_on_timer_change) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK)
                return -EIO;

        *ret = TAKE_PTR(g);
        return 0;
}

sd_event *curl_glue_get_event(CurlGlue *g) {
        return g->event;
}

/* Only HTTP(S), also after redirects. The _STR options exist from libcurl 7.85. */
static int curl_glue_restrict_protocols(CURL *c) {
#if LIBCURL_VERSION_NUM >= 0x075500
        if (curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK)
                return -EIO;
#else
        if (curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS)) != CURLE_OK)
                return -EIO;
#endif
        return 0;
}

int curl_glue_make(CURL **ret, const char *url, void *userdata) {
        _cleanup_(curl_easy_cleanupp) CURL *c = NULL;

        c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        if (curl_glue_restrict_protocols(c) < 0)
                return -EIO;
        if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PRIVATE, userdata) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 30L) != CURLE_OK)
                return -EIO;
        *ret = TAKE_PTR(c);
        return 0;
}

int curl_glue_add(CurlGlue *g, CURL *c) {
        if (curl_multi_add_handle(g->multi, c) != CURLM_OK)
                return -EIO;
        return 0;
}

void curl_glue_remove(CurlGlue *g, CURL *c) {
        if (g && c)
                (void) curl_multi_remove_handle(g->multi, c);
}
