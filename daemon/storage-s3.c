/* SPDX-License-Identifier: MIT */
/* s3:// — Amazon S3 and S3-compatible stores (Ceph RGW, MinIO, GCS interoperability) through
 * libcurl's SigV4 signer (CURLOPT_AWS_SIGV4). URLs and XML live in s3-request.c; operations,
 * transfers and multipart uploads in the shared core (objstore-http.h) — this file is the
 * provider: credentials, and how a request is addressed and signed.
 *
 * Region: storage.region, else $AWS_REGION, else $AWS_DEFAULT_REGION, else the instance's region
 * from IMDSv2 (/latest/meta-data/placement/region) when the instance role is used or
 * cloud.provider is "aws", else "us-east-1" (also when IMDS does not say).
 * Credentials: storage.credentials_file (INI, [default] aws_access_key_id, aws_secret_access_key,
 * aws_session_token), else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY/$AWS_SESSION_TOKEN, else the
 * instance role through IMDSv2 (fetched asynchronously; operations queue until it answers, and it
 * is fetched again five minutes before it expires).
 *
 * create_only puts send "If-None-Match: *" (S3 since 2024, RGW). A store that ignores the header
 * would silently overwrite. Multipart puts take no precondition.
 *
 * Test hooks (environment, never needed in production): TRAINSUPD_S3_TEST_MAX_KEYS=N lists in
 * pages of N keys (and ListMultipartUploads in pages of N uploads); TRAINSUPD_S3_TEST_CORRUPT_SHA256=1
 * sends a wrong x-amz-content-sha256. */
#include <stdio.h>

#include "cloud-aws.h"
#include "http.h"
#include "log.h"
#include "objstore-s3xml.h"
#include "s3-request.h"
#include "storage.h"
#include "strv.h"

static inline void fclosep_s3(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

#define S3_CREDS_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define S3_IMDS_DEFAULT "http://169.254.169.254"
#define S3_PATH_REGION "/latest/meta-data/placement/region"

/* IMDSv2 steps: session token, role name, role credentials, region. */
enum { S3_IMDS_TOKEN, S3_IMDS_ROLE, S3_IMDS_CREDS, S3_IMDS_REGION, S3_IMDS_DONE };

typedef struct S3Store {
        Objstore os;            /* first: Store->data points at it */
        char *bucket, *endpoint, *region;
        char *key_id, *secret, *token;
        usec_t expiration;      /* CLOCK_REALTIME; USEC_INFINITY for static keys */
        bool from_role;
        bool region_from_imds;  /* no region configured: ask IMDS once */
        bool creds_pending;
        int creds_error;
        HttpRequest *imds;
        unsigned imds_step;
        char *imds_token;
        char *imds_token_role;
        bool test_corrupt_sha256;
} S3Store;

static int s3_creds_refresh(S3Store *s3);

/* ---- requests ---- */

static int s3_request(Objstore *os, const ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL, *provider = NULL;
        S3Store *s3 = (S3Store *) os;
        bool body = a->kind == OBJSTORE_REQ_PUT || a->kind == OBJSTORE_REQ_MP_PART;
        char sha[65];
        int r;

        r = s3_url(s3->endpoint, s3->region, s3->bucket, a->key, a->query, &url);
        if (r < 0)
                return r;
        r = objstore_request_new(os, a->method, url, &req);
        if (r < 0)
                return r;
        /* A body of unknown SHA-256 (a file range) goes unsigned; TLS protects it. */
        snprintf(sha, sizeof(sha), "%s", a->payload_sha256 ?: body ? "UNSIGNED-PAYLOAD" : S3_EMPTY_SHA256);
        if (s3->test_corrupt_sha256 && strlen(sha) == 64)
                sha[0] = sha[0] == '0' ? '1' : '0';
        r = http_request_add_header(req, "x-amz-content-sha256: %s", sha);
        if (r >= 0 && s3->token)
                r = http_request_add_header(req, "x-amz-security-token: %s", s3->token);
        STRV_FOREACH(h, a->headers)
                if (r >= 0)
                        r = http_request_add_header(req, "%s", *h);
        if (r < 0)
                return r;
        if (asprintf(&provider, "aws:amz:%s:s3", s3->region) < 0)
                return -ENOMEM;
        r = http_request_set_aws_sigv4(req, provider, s3->key_id, s3->secret);
        if (r < 0)
                return r;
        *ret_gen = 0;
        *ret = TAKE_PTR(req);
        return 0;
}

static int s3_error_to_errno_message(const char *code, const char *message, long status) {
        return s3_error_to_errno(code, status);
}

/* Operations wait for credentials that are being fetched before their first request; later
 * requests use what is there. */
static int s3_auth(Objstore *os, ObjstoreOp *op) {
        S3Store *s3 = (S3Store *) os;
        int r;

        if (op->started)
                return 1;
        if (s3->creds_error < 0 && !s3->creds_pending)
                return s3->creds_error;
        if (s3->from_role && !s3->creds_pending && s3->expiration != USEC_INFINITY &&
            now_usec(CLOCK_REALTIME) + S3_CREDS_REFRESH_USEC >= s3->expiration) {
                r = s3_creds_refresh(s3);
                if (r < 0)
                        log_debug_errno(r, "Refreshing the S3 role credentials failed to start: %m");
        }
        return s3->creds_pending ? 0 : 1;
}

static void s3_cancel(Objstore *os) {
        S3Store *s3 = (S3Store *) os;

        s3->imds = http_request_free(s3->imds);
        s3->creds_pending = false;
}

/* ---- credentials ---- */

static void s3_creds_clear(S3Store *s3) {
        if (s3->secret)
                explicit_bzero(s3->secret, strlen(s3->secret));
        if (s3->token)
                explicit_bzero(s3->token, strlen(s3->token));
        s3->key_id = mfree(s3->key_id);
        s3->secret = mfree(s3->secret);
        s3->token = mfree(s3->token);
}

static int s3_creds_set(S3Store *s3, const char *key_id, const char *secret, const char *token, usec_t expiration) {
        if (isempty(key_id) || isempty(secret))
                return -ENOKEY;
        if (strpbrk(key_id, "\r\n") || strpbrk(secret, "\r\n") || (token && strpbrk(token, "\r\n")))
                return -EINVAL;
        s3_creds_clear(s3);
        s3->key_id = strdup(key_id);
        s3->secret = strdup(secret);
        s3->token = isempty(token) ? NULL : strdup(token);
        s3->expiration = expiration;
        if (!s3->key_id || !s3->secret || (!isempty(token) && !s3->token))
                return -ENOMEM;
        return 0;
}

/* ~/.aws/credentials style: [profile] then key = value lines; '#' and ';' start comments. The
 * profile is $AWS_PROFILE or "default". */
static int s3_creds_from_file(S3Store *s3, const char *path) {
        _cleanup_free_ char *line = NULL, *id = NULL, *secret = NULL, *token = NULL;
        const char *profile = getenv("AWS_PROFILE") ?: "default";
        _cleanup_(fclosep_s3) FILE *f = NULL;
        bool in = false;
        size_t cap = 0;
        int r;

        f = fopen(path, "re");
        if (!f)
                return log_error_errno(negative_errno(), "Cannot read storage.credentials_file %s: %m", path);
        while (getline(&line, &cap, f) >= 0) {
                char *l = objstore_strip(line), *eq, *k, *v, **dst = NULL;

                if (*l == '#' || *l == ';' || !*l)
                        continue;
                if (*l == '[') {
                        size_t n = strlen(l);
                        in = n >= 2 && l[n - 1] == ']' && strlen(profile) == n - 2 && strneq(l + 1, profile, n - 2);
                        continue;
                }
                eq = strchr(l, '=');
                if (!in || !eq)
                        continue;
                *eq = 0;
                k = objstore_strip(l);
                v = objstore_strip(eq + 1);
                if (streq(k, "aws_access_key_id"))
                        dst = &id;
                else if (streq(k, "aws_secret_access_key"))
                        dst = &secret;
                else if (streq(k, "aws_session_token"))
                        dst = &token;
                if (dst) {
                        free(*dst);
                        *dst = strdup(v);
                        if (!*dst)
                                return -ENOMEM;
                }
        }
        r = s3_creds_set(s3, id, secret, token, USEC_INFINITY);
        if (secret)
                explicit_bzero(secret, strlen(secret));
        if (token)
                explicit_bzero(token, strlen(token));
        if (line)
                explicit_bzero(line, cap);
        if (r == -ENOKEY)
                return log_error_errno(r, "storage.credentials_file %s has no aws_access_key_id/aws_secret_access_key in [%s].",
                                       path, profile);
        return r;
}

static const char *s3_imds_base(S3Store *s3) {
        return s3->os.store->config->cloud_metadata_url ?: S3_IMDS_DEFAULT;
}

static void s3_creds_ready(S3Store *s3, int error) {
        s3->creds_pending = false;
        if (error < 0 && s3->key_id && s3->expiration != USEC_INFINITY && now_usec(CLOCK_REALTIME) < s3->expiration) {
                log_warning_errno(error, "Refreshing the instance role credentials failed, using the current ones: %m");
                error = 0;
        } else if (error < 0)
                log_error_errno(error, "Cannot get S3 credentials from the instance role: %m");
        s3->creds_error = error;
        objstore_auth_ready(&s3->os, error);
}

static int s3_imds_step(S3Store *s3);

/* The instance's region, when IMDS says one: replaces the default. Never fatal. */
static void s3_take_region(S3Store *s3, int error, const char *body, size_t len) {
        _cleanup_free_ char *r = NULL;

        s3->region_from_imds = false;
        if (error == 0) {
                r = strndup(body, len);
                if (r)
                        r[strcspn(r, "\r\n")] = 0;
        }
        if (isempty(r) || strlen(r) > 64 || strpbrk(r, "/?#@:. \t")) {
                log_warning("The instance metadata did not give the region (%s); signing S3 requests for %s",
                            error < 0 ? strerror(-error) : "no valid answer", s3->region);
                return;
        }
        log_debug("S3 region %s, from the instance metadata", r);
        free(s3->region);
        s3->region = TAKE_PTR(r);
}

static unsigned s3_imds_next(S3Store *s3, unsigned step) {
        if (step == S3_IMDS_TOKEN && s3->from_role)
                return S3_IMDS_ROLE;
        if (step == S3_IMDS_ROLE)
                return S3_IMDS_CREDS;
        if (step < S3_IMDS_REGION && s3->region_from_imds)
                return S3_IMDS_REGION;
        return S3_IMDS_DONE;
}

static void s3_on_imds(HttpRequest *req, int error, void *userdata) {
        S3Store *s3 = userdata;
        AwsCredentials c = {};
        const char *body;
        char *role = NULL;
        size_t len;

        body = http_request_body(req, &len);
        if (s3->imds_step == S3_IMDS_ROLE && error == -ENOENT)
                error = -ENOKEY;        /* no role attached to the instance: no credentials */
        if (error == 0 && s3->imds_step == S3_IMDS_TOKEN) {
                s3->imds_token = strndup(body, len);
                error = s3->imds_token ? 0 : -ENOMEM;
        } else if (error == 0 && s3->imds_step == S3_IMDS_ROLE) {
                error = aws_parse_role_list(body, len, &role);
                if (error == -ENOENT)
                        error = -ENOKEY;
                free(s3->imds_token_role);
                s3->imds_token_role = role;
        } else if (error == 0 && s3->imds_step == S3_IMDS_CREDS) {
                error = aws_parse_credentials(body, len, &c);
                if (error == 0)
                        error = s3_creds_set(s3, c.access_key_id, c.secret_access_key, c.token, c.expiration);
                aws_credentials_done(&c);
        } else if (s3->imds_step == S3_IMDS_REGION) {
                s3_take_region(s3, error, body, len);
                error = 0;
        }
        if (error < 0 && s3->imds_step == S3_IMDS_TOKEN && !s3->from_role) {
                s3_take_region(s3, error, NULL, 0);     /* only the region was wanted */
                error = 0;
                s3->imds_step = S3_IMDS_DONE;
        } else
                s3->imds_step = s3_imds_next(s3, s3->imds_step);
        if (error == 0 && s3->imds_step != S3_IMDS_DONE)
                error = s3_imds_step(s3);
        if (error < 0 || s3->imds_step == S3_IMDS_DONE) {
                s3->imds = http_request_free(s3->imds);
                s3_creds_ready(s3, error);
        }
}

static int s3_imds_step(S3Store *s3) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (s3->imds_step == S3_IMDS_TOKEN)
                r = asprintf(&url, "%s/latest/api/token", s3_imds_base(s3));
        else if (s3->imds_step == S3_IMDS_REGION)
                r = asprintf(&url, "%s" S3_PATH_REGION, s3_imds_base(s3));
        else
                r = asprintf(&url, "%s" AWS_PATH_ROLES "%s", s3_imds_base(s3),
                             s3->imds_step == S3_IMDS_CREDS ? s3->imds_token_role : "");
        if (r < 0)
                return -ENOMEM;
        s3->imds = http_request_free(s3->imds);
        r = http_request_new(&s3->imds, s3->os.store->glue, s3->imds_step == S3_IMDS_TOKEN ? "PUT" : "GET", url);
        if (r < 0)
                return r;
        if (s3->imds_step == S3_IMDS_TOKEN)
                r = http_request_add_header(s3->imds, "X-aws-ec2-metadata-token-ttl-seconds: 21600");
        else
                r = http_request_add_header(s3->imds, "X-aws-ec2-metadata-token: %s", s3->imds_token);
        if (r < 0)
                return r;
        http_request_set_no_proxy(s3->imds, true);
        http_request_set_max_response(s3->imds, 64 * 1024);
        http_request_set_timeouts(s3->imds, 2 * USEC_PER_SEC, 5 * USEC_PER_SEC);
        http_request_set_retry(s3->imds, 3, 500 * USEC_PER_MSEC, 5 * USEC_PER_SEC);
        return http_request_start(s3->imds, s3_on_imds, s3);
}

/* Starts fetching the instance role's credentials (IMDSv2); operations queue meanwhile. */
static int s3_creds_refresh(S3Store *s3) {
        int r;

        if (s3->creds_pending)
                return 0;
        s3->imds_step = S3_IMDS_TOKEN;
        s3->imds_token = mfree(s3->imds_token);
        r = s3_imds_step(s3);
        if (r < 0)
                return r;
        s3->creds_pending = true;
        return 0;
}

static int s3_creds_setup(S3Store *s3) {
        const char *file = s3->os.store->config->storage_credentials_file;
        const char *id = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");

        int r;

        if (file)
                r = s3_creds_from_file(s3, file);
        else if (!isempty(id) && !isempty(secret))
                r = s3_creds_set(s3, id, secret, getenv("AWS_SESSION_TOKEN"), USEC_INFINITY);
        else {
                s3->from_role = true;
                return s3_creds_refresh(s3);    /* the region too, when wanted */
        }
        if (r < 0 || !s3->region_from_imds || s3->os.store->config->cloud_provider != CLOUD_PROVIDER_AWS)
                return r;
        return s3_creds_refresh(s3);            /* only the region */
}

/* ---- the vtable ---- */

static void s3_close(Objstore *os) {
        S3Store *s3 = (S3Store *) os;

        http_request_free(s3->imds);
        s3_creds_clear(s3);
        free(s3->imds_token);
        free(s3->imds_token_role);
        free(s3->bucket);
        free(s3->endpoint);
        free(s3->region);
}

static int s3_open_region(S3Store *s3) {
        const char *r = s3->os.store->config->storage_region;

        /* Without any setting: us-east-1, which S3 redirects from and RGW/MinIO accept. */
        if (isempty(r))
                r = getenv("AWS_REGION");
        if (isempty(r))
                r = getenv("AWS_DEFAULT_REGION");
        if (isempty(r)) {
                r = "us-east-1";
                s3->region_from_imds = true;
        }
        if (strlen(r) > 64 || strpbrk(r, "/?#@:. \t\r\n"))
                return log_error_errno(-EINVAL, "Invalid S3 region \"%s\".", r);
        s3->region = strdup(r);
        return s3->region ? 0 : -ENOMEM;
}

static int s3_setup(Objstore *os) {
        S3Store *s3 = (S3Store *) os;
        Store *s = os->store;
        int r;

        s3->expiration = USEC_INFINITY;
        r = s3_location_parse(s->location, &s3->bucket, &os->prefix);
        if (r < 0)
                return log_error_errno(r, "Invalid S3 URL \"%s\": expected s3://BUCKET[/PREFIX].", s->url);
        r = objstore_endpoint(s, s3_endpoint_check, "http(s)://HOST[:PORT]", &s3->endpoint);
        if (r < 0)
                return r;
        r = s3_open_region(s3);
        if (r < 0)
                return r;
        s3->test_corrupt_sha256 = !isempty(getenv("TRAINSUPD_S3_TEST_CORRUPT_SHA256"));
        return s3_creds_setup(s3);
}

static const ObjstoreProvider s3_provider = {
        .name = "S3",
        .what = OBJSTORE_WHAT("PUT", "GET", "ListObjectsV2", "DELETE", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"),
        .meta_sha256_header = "x-amz-meta-sha256",
        .create_only_header = "If-None-Match: *",
        .list_max_env = "TRAINSUPD_S3_TEST_MAX_KEYS",
        .part_sha256 = true,    /* each part's x-amz-content-sha256 */
        .size = sizeof(S3Store),
        .open = s3_setup,
        .close = s3_close,
        .auth = s3_auth,
        .cancel = s3_cancel,
        .request = s3_request,
        .error_to_errno = s3_error_to_errno_message,
        .mp_begin_query = "uploads=",
        OBJSTORE_S3XML_HOOKS,
};

static int s3_open(Store *s, void **ret_data) {
        return objstore_open(s, &s3_provider, ret_data);
}

const StoreVTable store_s3_vtable = {
        .scheme = "s3",
        .min_part_size = 5ULL * 1024 * 1024,
        .max_part_size = 5ULL * 1024 * 1024 * 1024,
        .max_parts = 10000,
        .open = s3_open,
        .close = objstore_close,
        OBJSTORE_VTABLE_OPS,
        .sweep_uploads = objstore_sweep_uploads,        /* ListMultipartUploads, AbortMultipartUpload */
};
