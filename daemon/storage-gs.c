/* SPDX-License-Identifier: MIT */
/* gs:// — Google Cloud Storage through its XML API (https://storage.googleapis.com/BUCKET/KEY, or
 * storage.endpoint path-style), authenticated with "Authorization: Bearer" and the VM's service
 * account token from the GCE metadata server (cloud-gce.c, gce_fetch_token(); base address
 * cloud.metadata_url or the metadata server's own). The XML API speaks S3's dialect, so URLs, XML
 * and error documents come from s3-request.c.
 *
 * Token: fetched when the store opens; operations queue while a fetch runs. It is fetched again
 * in the background once half its lifetime (at most 5 minutes) is left, and requests wait for a
 * new one once it is about to expire (the last quarter, at most 30 s). A 401 drops the token and
 * the request is made again with a new one, twice at most per operation. Never logged.
 *
 * put: one PUT; create_only sends "x-goog-if-generation-match: 0" (GCS's create-only
 * precondition: 412 when the object exists). The XML API's multipart uploads take no
 * preconditions, so a create_only put is always one PUT (GCS accepts up to 5 TiB in one request).
 * Otherwise n_parts > 1 is an XML multipart upload (POST ?uploads, PUT ?partNumber=N&uploadId=,
 * POST ?uploadId= with <CompleteMultipartUpload>), at most storage.concurrency parts at a time,
 * aborted (DELETE ?uploadId=) on failure. The whole object's SHA-256 goes into x-goog-meta-sha256;
 * GCS itself only checks CRC32C/MD5, so the SHA-256s are not verified by the store.
 *
 * sweep_uploads: GET /BUCKET?prefix=P&uploads= (the XML API's "List multipart uploads", documented
 * with S3's answer format and key/upload-id markers), then DELETE ?uploadId= for the old ones. Only
 * the shared core's unit test exercises it: neither GCS nor fake-gcs.py was run with it.
 *
 * Operations, transfers and multipart uploads are the shared core's (objstore-http.h); this file
 * is the provider: the token, and how a request is addressed and authorized.
 *
 * Test hook (environment): TRAINSUPD_GS_TEST_MAX_KEYS=N lists in pages of N keys (and uploads). */
#include <inttypes.h>

#include "cloud-gce.h"
#include "http.h"
#include "log.h"
#include "objstore-s3xml.h"
#include "s3-request.h"
#include "storage.h"
#include "strv.h"

#define GS_AUTH_RETRIES 2U                      /* new tokens after a 401, per operation */
#define GS_TOKEN_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define GS_TOKEN_SAFETY_USEC (30 * USEC_PER_SEC)
#define GS_TOKEN_MIN_USE_USEC (1 * USEC_PER_SEC)
#define GS_TOKEN_FETCH_ATTEMPTS 3U
#define GS_TOKEN_FAILED_RETRY_USEC (10 * USEC_PER_SEC)

typedef struct GsStore {
        Objstore os;            /* first: Store->data points at it */
        char *bucket, *endpoint;
        CloudWatch *metadata;   /* never started: only the base address for gce_fetch_token() */
        GceFetch *fetch;
        sd_event_source *fetch_timer;
        unsigned fetch_attempts;
        char *auth;             /* "Authorization: Bearer ...": secret */
        unsigned gen;           /* bumped with every new token */
        usec_t refresh_at, unusable_at; /* CLOCK_BOOTTIME */
} GsStore;

static int gs_token_fetch(GsStore *gs);
static void gs_on_token(GceFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata);

/* ---- the token ---- */

static void gs_token_clear(GsStore *gs) {
        if (gs->auth)
                explicit_bzero(gs->auth, strlen(gs->auth));
        gs->auth = mfree(gs->auth);
        gs->gen++;
}

static bool gs_token_usable(GsStore *gs) {
        return gs->auth && now_usec(CLOCK_BOOTTIME) < gs->unusable_at;
}

/* A 401 for a request that carried token generation gen: drops that token (unless a newer one
 * is already there) and says whether the operation may try again. */
static bool gs_token_rejected(ObjstoreOp *op, HttpRequest *req, unsigned gen) {
        GsStore *gs = (GsStore *) op->os;

        if (http_request_status(req) != 401 || op->auth_retries >= GS_AUTH_RETRIES)
                return false;
        op->auth_retries++;
        if (gen == gs->gen) {
                log_debug("GCS refused the access token (HTTP 401), fetching a new one.");
                gs_token_clear(gs);
        }
        return true;
}

static int gs_token_fetch_start(GsStore *gs) {
        gs->fetch_attempts++;
        return gce_fetch_token(gs->metadata, gs_on_token, gs, &gs->fetch);
}

/* The fetch failed for good: keep a token that still works, else fail the waiting ops. */
static void gs_token_failed(GsStore *gs, int error) {
        if (gs_token_usable(gs)) {
                log_warning_errno(error, "Refreshing the GCS access token failed, using the current one: %m");
                gs->refresh_at = now_usec(CLOCK_BOOTTIME) + GS_TOKEN_FAILED_RETRY_USEC;
                error = 0;
        } else
                log_error_errno(error, "Cannot get a GCS access token from the metadata server: %m");
        objstore_auth_ready(&gs->os, error);
}

static int gs_on_fetch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        GsStore *gs = userdata;
        int r;

        gs->fetch_timer = sd_event_source_disable_unref(gs->fetch_timer);
        r = gs_token_fetch_start(gs);
        if (r < 0)
                gs_token_failed(gs, r);
        return 0;
}

static void gs_on_token(GceFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata) {
        GsStore *gs = userdata;
        usec_t now = now_usec(CLOCK_BOOTTIME);
        char *auth = NULL;
        int r;

        gs->fetch = gce_fetch_free(f);
        if (error == 0)
                error = gs_bearer_header(access_token, &auth);
        if (error < 0 && http_error_retryable(error) && gs->fetch_attempts < GS_TOKEN_FETCH_ATTEMPTS) {
                log_debug_errno(error, "Fetching the GCS access token failed, trying again: %m");
                r = sd_event_add_time_relative(gs->os.store->event, &gs->fetch_timer, CLOCK_BOOTTIME,
                                               gs->fetch_attempts * 500 * USEC_PER_MSEC, 0, gs_on_fetch_timer, gs);
                if (r >= 0)
                        return;
                error = r;
        }
        if (error < 0) {
                gs_token_failed(gs, error);
                return;
        }
        gs_token_clear(gs);
        gs->auth = auth;
        gs->refresh_at = now + expires_in - MIN(GS_TOKEN_REFRESH_USEC, expires_in / 2);
        gs->unusable_at = now + MAX(expires_in - MIN(GS_TOKEN_SAFETY_USEC, expires_in / 4), GS_TOKEN_MIN_USE_USEC);
        log_debug("Got a GCS access token, valid for %" PRIu64 " s.", (uint64_t) (expires_in / USEC_PER_SEC));
        objstore_auth_ready(&gs->os, 0);
}

/* Starts a token fetch unless one runs (or waits to be tried again) already. */
static int gs_token_fetch(GsStore *gs) {
        if (gs->fetch || gs->fetch_timer)
                return 0;
        gs->fetch_attempts = 0;
        return gs_token_fetch_start(gs);
}

/* Runs an operation's step with a usable token, or makes it wait for one. */
static int gs_auth(Objstore *os, ObjstoreOp *op) {
        GsStore *gs = (GsStore *) os;
        int r;

        if (gs->auth && gs_token_usable(gs) && now_usec(CLOCK_BOOTTIME) >= gs->refresh_at) {
                r = gs_token_fetch(gs); /* in the background */
                if (r < 0)
                        log_debug_errno(r, "Cannot start refreshing the GCS access token: %m");
        }
        if (gs_token_usable(gs))
                return 1;
        r = gs_token_fetch(gs);
        return r < 0 ? r : 0;
}

static void gs_cancel(Objstore *os) {
        GsStore *gs = (GsStore *) os;

        gs->fetch = gce_fetch_free(gs->fetch);
        gs->fetch_timer = sd_event_source_disable_unref(gs->fetch_timer);
}

/* ---- requests ---- */

/* A request with the current token; *ret_gen gets its generation. */
static int gs_request(Objstore *os, const ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL;
        GsStore *gs = (GsStore *) os;
        int r;

        if (!gs->auth)
                return -ENOKEY;
        r = gs_url(gs->endpoint, gs->bucket, a->key, a->query, &url);
        if (r < 0)
                return r;
        r = objstore_request_new(os, a->method, url, &req);
        if (r < 0)
                return r;
        r = http_request_add_header(req, "%s", gs->auth);
        STRV_FOREACH(h, a->headers)
                if (r >= 0)
                        r = http_request_add_header(req, "%s", *h);
        if (r < 0)
                return r;
        *ret_gen = gs->gen;
        *ret = TAKE_PTR(req);
        return 0;
}

static int gs_error_to_errno_message(const char *code, const char *message, long status) {
        return gs_error_to_errno(code, status);
}

/* ---- the vtable ---- */

static void gs_close(Objstore *os) {
        GsStore *gs = (GsStore *) os;

        gce_fetch_free(gs->fetch);
        sd_event_source_disable_unref(gs->fetch_timer);
        cloud_watch_free(gs->metadata);
        gs_token_clear(gs);
        free(gs->bucket);
        free(gs->endpoint);
}

static int gs_setup(Objstore *os) {
        GsStore *gs = (GsStore *) os;
        Store *s = os->store;
        int r;

        r = gs_location_parse(s->location, &gs->bucket, &os->prefix);
        if (r < 0)
                return log_error_errno(r, "Invalid GCS URL \"%s\": expected gs://BUCKET[/PREFIX].", s->url);
        r = objstore_endpoint(s, s3_endpoint_check, "http(s)://HOST[:PORT]", &gs->endpoint);
        if (r < 0)
                return r;
        r = cloud_watch_new(&gs->metadata, CLOUD_PROVIDER_GCE, s->event, s->glue, s->config->cloud_metadata_url,
                            USEC_PER_SEC, NULL, NULL);
        if (r < 0)
                return r;
        /* The first token, early: operations queue until it is there. */
        r = gs_token_fetch(gs);
        if (r < 0)
                return log_error_errno(r, "Cannot start fetching a GCS access token: %m");
        return 0;
}

static const ObjstoreProvider gs_provider = {
        .name = "GCS",
        .what = OBJSTORE_WHAT("PUT", "GET", "ListObjectsV2", "DELETE", "initiate multipart upload", "upload part", "complete multipart upload", "abort multipart upload"),
        .meta_sha256_header = "x-goog-meta-sha256",
        .create_only_header = GS_CREATE_ONLY_HEADER,
        .list_max_env = "TRAINSUPD_GS_TEST_MAX_KEYS",
        .create_only_single = true,     /* multipart uploads take no preconditions */
        .size = sizeof(GsStore),
        .open = gs_setup,
        .close = gs_close,
        .auth = gs_auth,
        .auth_rejected = gs_token_rejected,
        .cancel = gs_cancel,
        .request = gs_request,
        .error_to_errno = gs_error_to_errno_message,
        .mp_begin_query = "uploads",
        OBJSTORE_S3XML_HOOKS,
};

static int gs_open(Store *s, void **ret_data) {
        return objstore_open(s, &gs_provider, ret_data);
}

const StoreVTable store_gs_vtable = {
        .scheme = "gs",
        .min_part_size = 5ULL * 1024 * 1024,
        .max_part_size = 5ULL * 1024 * 1024 * 1024,
        .max_parts = 10000,
        .open = gs_open,
        .close = objstore_close,
        OBJSTORE_VTABLE_OPS,
        .sweep_uploads = objstore_sweep_uploads,        /* the XML API's GET ?uploads, DELETE ?uploadId= */
};
