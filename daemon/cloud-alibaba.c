/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>

#include "cloud-alibaba.h"
#include "cloud-aws.h"

int alibaba_parse_termination_time(const char *body, size_t len, usec_t *ret) {
        char buf[ALIBABA_TIME_STRING_MAX + 1];
        usec_t t;

        while (len > 0 && isspace((unsigned char) *body))
                body++, len--;
        while (len > 0 && isspace((unsigned char) body[len - 1]))
                len--;
        if (len == 0)
                return 0;
        if (len > ALIBABA_TIME_STRING_MAX)
                return -EFBIG;
        if (memchr(body, 0, len))
                return -EBADMSG;
        memcpy(buf, body, len);
        buf[len] = 0;
        if (parse_rfc3339(buf, &t) < 0)
                return -EBADMSG;
        *ret = t;
        return 1;
}

void alibaba_termination_to_notice(usec_t t, Notice *ret) {
        char when[RFC3339_MAX];

        *ret = (Notice) { .provider = CLOUD_PROVIDER_ALIBABA, .kind = NOTICE_SPOT_INTERRUPTION, .deadline = t,
                          .imminent = true };
        notice_set_string(ret->id, sizeof(ret->id), ALIBABA_SPOT_NOTICE_ID);
        snprintf(ret->summary, sizeof(ret->summary), "spot instance released at %s", format_rfc3339(when, t));
}

typedef struct AlibabaWatch {
        ImdsSession *session;
        ImdsPoller *spot;
} AlibabaWatch;

static const ImdsTokenScheme alibaba_token_scheme = {
        .ttl_header = "X-aliyun-ecs-metadata-token-ttl-seconds",
        .token_header = "X-aliyun-ecs-metadata-token",
};

static int alibaba_on_spot(CloudWatch *w, const char *channel, long status, const char *body, size_t len,
                           void *userdata) {
        usec_t t;
        Notice n;
        int r;

        r = status == 404 ? 0 : alibaba_parse_termination_time(body, len, &t);
        if (r < 0)
                return r;
        if (r == 0) {
                cloud_watch_update(w, channel, NULL, 0);
                return 0;
        }
        alibaba_termination_to_notice(t, &n);
        cloud_watch_update(w, channel, &n, 1);
        return 0;
}

static AlibabaWatch *alibaba_watch_free(AlibabaWatch *a) {
        if (!a)
                return NULL;
        imds_poller_free(a->spot);
        imds_session_free(a->session);
        return mfree(a);
}
DEFINE_CLEANUP_FUNC(AlibabaWatch *, alibaba_watch_free);

static int alibaba_start(CloudWatch *w) {
        _cleanup_(alibaba_watch_freep) AlibabaWatch *a = NULL;
        int r;

        if (w->data)
                return -EBUSY;
        a = calloc(1, sizeof(AlibabaWatch));
        if (!a)
                return -ENOMEM;
        r = imds_session_new(&a->session, w, &alibaba_token_scheme);
        if (r < 0)
                return r;
        r = imds_poller_new(&a->spot, a->session, "spot", ALIBABA_PATH_SPOT, 404, false, alibaba_on_spot, a);
        if (r < 0)
                return r;
        r = imds_poller_start(a->spot);
        if (r < 0)
                return r;
        w->data = TAKE_PTR(a);
        return 0;
}

static void alibaba_stop(CloudWatch *w) {
        w->data = alibaba_watch_free(w->data);
}

const CloudProviderVTable cloud_alibaba = {
        .id = CLOUD_PROVIDER_ALIBABA,
        .name = "alibaba",
        .default_base_url = "http://100.100.100.200",
        .start = alibaba_start,
        .stop = alibaba_stop,
};
