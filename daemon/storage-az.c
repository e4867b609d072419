/* SPDX-License-Identifier: MIT */
/* az:// — Azure Blob Storage (and azurite): az://ACCOUNT/CONTAINER[/PREFIX]. URLs, signatures and
 * XML live in az-request.c.
 *
 * Endpoint: storage.endpoint (path-style, e.g. azurite's http://127.0.0.1:10000/devstoreaccount1),
 * else https://ACCOUNT.blob.core.windows.net.
 *
 * Credentials, the first that is there:
 *   1. storage.credentials_file: "key = value" lines, '#' starts a comment, unknown keys ignored:
 *        account_key = <base64 account key>      (SharedKey; wins when both are given)
 *        sas_token = <sv=...&sig=...>              (a leading '?' is fine)
 *   2. $AZURE_STORAGE_KEY (SharedKey), then $AZURE_STORAGE_SAS_TOKEN.
 *   3. The VM's managed identity: a Bearer token for https://storage.azure.com/ from IMDS
 *      (cloud.metadata_url or 169.254.169.254; $AZURE_CLIENT_ID picks a user-assigned identity),
 *      fetched asynchronously (operations queue meanwhile) and again five minutes before it
 *      expires. Bearer tokens are only ever sent over https.
 * Keys, SAS tokens and bearer tokens are never logged.
 *
 * Writes: objects of one part are one Put Blob (x-ms-blob-type BlockBlob); larger ones are Put
 * Block per part (at most storage.concurrency in flight) and one Put Block List. Every body
 * carries Content-MD5 (computed in the worker for file ranges), which the service verifies
 * (Md5Mismatch → -EBADMSG); the object's SHA-256 goes in x-ms-meta-sha256. create_only sends
 * "If-None-Match: *" on Put Blob and Put Block List (409/412 → -EEXIST). A failed block upload
 * leaves only uncommitted blocks, which are invisible and which Azure drops after a week. Two
 * writers uploading blocks for the same blob name at once would mix their blocks: the snapshot
 * engine never does that (data objects have unique names; manifests are single puts).
 *
 * Operations, transfers and block uploads are the shared core's (objstore-http.h); this file is
 * the provider: credentials, and how a request is addressed and signed.
 *
 * Test hooks (environment, never needed in production): TRAINSUPD_AZ_TEST_MAX_RESULTS=N lists in
 * pages of N blobs; TRAINSUPD_AZ_TEST_CORRUPT_MD5=1 sends a wrong Content-MD5 with every body. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "az-request.h"
#include "cloud-azure.h"
#include "cloud.h"
#include "http.h"
#include "log.h"
#include "objstore-http.h"
#include "storage.h"
#include "strv.h"

#define AZ_TOKEN_REFRESH_USEC (5 * 60 * USEC_PER_SEC)
#define AZ_IMDS_DEFAULT "http://169.254.169.254"
#define AZ_TOKEN_RESOURCE "https://storage.azure.com/"

static_assert(AZ_MD5_B64_SIZE == OBJSTORE_MD5_B64_SIZE, "Content-MD5 sizes");

typedef enum AzAuth {
        AZ_AUTH_KEY,
        AZ_AUTH_SAS,
        AZ_AUTH_BEARER,
} AzAuth;

typedef struct AzStore {
        Objstore os;                    /* first: Store->data points at it */
        char *account, *container, *endpoint;
        AzAuth auth;
        char *key, *sas, *token;
        usec_t token_expiration;        /* CLOCK_REALTIME */
        bool token_pending;
        int creds_error;
        AzureFetch *fetch;
        CloudWatch imds;                /* only base_url and glue: what azure_fetch_token uses */
        bool test_corrupt_md5;
} AzStore;

static int az_token_refresh(AzStore *az);

static void az_secret_free(char **p) {
        if (*p)
                explicit_bzero(*p, strlen(*p));
        *p = mfree(*p);
}

/* ---- requests ---- */

/* What Azure wants besides the core's headers, by request. */
static int az_extra_headers(AzStore *az, const ObjstoreRequestArgs *a, char ***headers) {
        const char *md5 = a->content_md5;
        int r = 0;

        switch (a->kind) {
        case OBJSTORE_REQ_PUT:
                r = strv_extend(headers, "x-ms-blob-type: BlockBlob");
                break;
        case OBJSTORE_REQ_MP_PART:
                r = strv_extend(headers, "Content-Type: application/octet-stream");
                break;
        case OBJSTORE_REQ_MP_COMMIT:
                /* The block list makes the blob: its properties and precondition go with it. */
                r = strv_extendf(headers, "x-ms-blob-content-type: %s", a->op->content_type ?: "application/octet-stream");
                if (r >= 0)
                        r = objstore_object_headers(a->op, true, headers);
                break;
        case OBJSTORE_REQ_REMOVE:
                /* An empty Content-Type drops the one curl would add to a bodied DELETE; signed empty. */
                r = strv_extend(headers, "Content-Type:");
                break;
        default:
                break;
        }
        if (r >= 0 && md5)
                r = strv_extendf(headers, "Content-MD5: %c%s", az->test_corrupt_md5 ? (md5[0] == 'A' ? 'B' : 'A') : md5[0],
                                 md5 + 1);
        return r;
}

/* A signed request: the x-ms-* headers, the core's and ours, then SharedKey or Bearer (SAS is in
 * the URL). */
static int az_request(Objstore *os, const ObjstoreRequestArgs *a, HttpRequest **ret, unsigned *ret_gen) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        _cleanup_(strv_freep) char **headers = NULL;
        AzStore *az = (AzStore *) os;
        char date[32];
        int r;

        r = az_url(az->endpoint, az->account, az->container, a->key, a->query, az->auth == AZ_AUTH_SAS ? az->sas : NULL,
                   &url);
        if (r < 0)
                return r;
        r = az_format_date(now_usec(CLOCK_REALTIME), date);
        if (r < 0)
                return r;
        r = strv_extendf(&headers, "x-ms-date: %s", date);
        if (r >= 0)
                r = strv_extend(&headers, "x-ms-version: " AZ_API_VERSION);
        STRV_FOREACH(h, a->headers)
                if (r >= 0)
                        r = strv_extend(&headers, *h);
        if (r >= 0)
                r = az_extra_headers(az, a, &headers);
        if (r < 0)
                return r;
        if (az->auth == AZ_AUTH_KEY)
                r = az_authorization(az->key, a->method, az->account, url, a->content_length, headers, &auth);
        else if (az->auth == AZ_AUTH_BEARER)
                r = asprintf(&auth, "Bearer %s", az->token ?: "") < 0 ? -ENOMEM : 0;
        if (r < 0)
                return r;
        r = objstore_request_new(os, a->method, url, &req);
        STRV_FOREACH(h, headers)
                if (r >= 0)
                        r = http_request_add_header(req, "%s", *h);
        if (r >= 0 && auth)
                r = http_request_add_header(req, "Authorization: %s", auth);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        if (r < 0)
                return r;
        *ret_gen = 0;
        *ret = TAKE_PTR(req);
        return 0;
}

/* Azure answers 416 for a range that starts beyond the end; azurite a 206 with
 * "Content-Range: bytes 10-9/10" and no bytes. Either way: -ERANGE. */
static int az_get_check(ObjstoreOp *op, HttpRequest *req) {
        const char *cr = http_request_header(req, "Content-Range"), *slash = cr ? strrchr(cr, '/') : NULL;
        uint64_t total;

        if (slash && sscanf(slash + 1, "%" SCNu64, &total) == 1 &&
            (op->offset >= MAX(total, 1U) || (op->len > 0 && op->offset + op->len > total)))
                return -ERANGE;
        return 0;
}

static int az_list_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_next) {
        _cleanup_(az_list_page_done) AzListPage page = {};
        int r;

        r = az_parse_list(xml, len, &page);
        if (r < 0)
                return r;
        for (size_t i = 0; i < page.n_blobs; i++) {
                r = objstore_list_add(op, page.blobs[i].name, page.blobs[i].size, page.blobs[i].modified);
                if (r < 0)
                        return r;
        }
        *ret_next = TAKE_PTR(page.next_marker);
        return 0;
}

/* ---- blocks: Put Block per part, Put Block List to commit; nothing to begin or abort ---- */

static int az_block_query_of(size_t i, const char *upload_id, char **ret) {
        char id[AZ_BLOCK_ID_SIZE];
        int r = az_block_id(i, id);

        return r < 0 ? r : az_block_query(id, ret);
}

static int az_block_list_query(const char *upload_id, char **ret) {
        *ret = strdup("comp=blocklist");
        return *ret ? 0 : -ENOMEM;
}

static int az_block_list_of(char * const *etags, size_t n, char **ret) {
        return az_block_list_body(n, ret);
}

/* ---- credentials ---- */

static bool az_token_stale(AzStore *az) {
        return az->auth == AZ_AUTH_BEARER &&
               (!az->token || now_usec(CLOCK_REALTIME) + AZ_TOKEN_REFRESH_USEC >= az->token_expiration);
}

/* Operations wait for a token that is being fetched before their first request, unless the
 * current one is still valid; later requests use what is there. */
static int az_auth(Objstore *os, ObjstoreOp *op) {
        AzStore *az = (AzStore *) os;
        int r;

        if (op->started)
                return 1;
        if (az->creds_error < 0 && !az->token_pending && !az->token)
                return az->creds_error;
        if (!az->token_pending && az_token_stale(az)) {
                r = az_token_refresh(az);
                if (r < 0)
                        log_debug_errno(r, "Refreshing the Azure storage token failed to start: %m");
        }
        return az->token_pending && (!az->token || now_usec(CLOCK_REALTIME) >= az->token_expiration) ? 0 : 1;
}

static void az_cancel(Objstore *os) {
        AzStore *az = (AzStore *) os;

        az->fetch = azure_fetch_free(az->fetch);
        az->token_pending = false;
}

static void az_token_ready(AzStore *az, int error) {
        az->token_pending = false;
        if (error < 0 && az->token && now_usec(CLOCK_REALTIME) < az->token_expiration) {
                log_warning_errno(error, "Refreshing the Azure storage token failed, using the current one: %m");
                error = 0;
        } else if (error < 0)
                log_error_errno(error, "Cannot get an Azure storage token from the managed identity: %m");
        az->creds_error = error;
        objstore_auth_ready(&az->os, error);
}

static void az_on_token(AzureFetch *f, int error, const char *access_token, usec_t expires_in, void *userdata) {
        AzStore *az = userdata;

        az->fetch = azure_fetch_free(az->fetch);
        if (error == 0 && (isempty(access_token) || strpbrk(access_token, "\r\n")))
                error = -EBADMSG;
        if (error == 0) {
                az_secret_free(&az->token);
                az->token = strdup(access_token);
                if (!az->token)
                        error = -ENOMEM;
                az->token_expiration = now_usec(CLOCK_REALTIME) + expires_in;
        }
        az_token_ready(az, error);
}

static int az_token_refresh(AzStore *az) {
        int r;

        if (az->token_pending)
                return 0;
        r = azure_fetch_token(&az->imds, AZ_TOKEN_RESOURCE, getenv("AZURE_CLIENT_ID"), az_on_token, az, &az->fetch);
        if (r < 0)
                return r;
        az->token_pending = true;
        return 0;
}

static int az_creds_set_key(AzStore *az, const char *key) {
        void *raw = NULL;
        size_t len = 0;
        int r;

        r = az_base64_decode(key, &raw, &len);
        if (r < 0)
                return log_error_errno(r, "The Azure storage account key is not base64.");
        explicit_bzero(raw, len);
        free(raw);
        az->key = strdup(key);
        az->auth = AZ_AUTH_KEY;
        return az->key ? 0 : -ENOMEM;
}

static int az_creds_set_sas(AzStore *az, const char *sas) {
        int r = az_sas_normalize(sas, &az->sas);

        if (r < 0)
                return log_error_errno(r, "The Azure SAS token is not a URL query with a signature (sig=).");
        az->auth = AZ_AUTH_SAS;
        return 0;
}

static int az_creds_from_file(AzStore *az, const char *path) {
        _cleanup_free_ char *line = NULL;
        char *key = NULL, *sas = NULL;
        FILE *f;
        size_t cap = 0;
        int r = 0;

        f = fopen(path, "re");
        if (!f)
                return log_error_errno(negative_errno(), "Cannot read storage.credentials_file %s: %m", path);
        while (r >= 0 && getline(&line, &cap, f) >= 0) {
                char *l = objstore_strip(line), *eq, *k, *v, **dst = NULL;

                if (*l == '#' || !*l || !(eq = strchr(l, '=')))
                        continue;
                *eq = 0;
                k = objstore_strip(l);
                v = objstore_strip(eq + 1);
                if (streq(k, "account_key"))
                        dst = &key;
                else if (streq(k, "sas_token"))
                        dst = &sas;
                if (dst) {
                        az_secret_free(dst);
                        if (!(*dst = strdup(v)))
                                r = -ENOMEM;
                }
        }
        (void) fclose(f);
        if (line)
                explicit_bzero(line, cap);
        if (r >= 0 && !isempty(key))
                r = az_creds_set_key(az, key);
        else if (r >= 0 && !isempty(sas))
                r = az_creds_set_sas(az, sas);
        else if (r >= 0)
                r = log_error_errno(-ENOKEY, "storage.credentials_file %s has neither account_key nor sas_token.", path);
        az_secret_free(&key);
        az_secret_free(&sas);
        return r;
}

static int az_creds_setup(AzStore *az) {
        const char *file = az->os.store->config->storage_credentials_file;
        const char *key = getenv("AZURE_STORAGE_KEY"), *sas = getenv("AZURE_STORAGE_SAS_TOKEN");
        const char *base = az->os.store->config->cloud_metadata_url ?: AZ_IMDS_DEFAULT;
        const char *url_start = az->endpoint ?: "https://";

        if (file)
                return az_creds_from_file(az, file);
        if (!isempty(key))
                return az_creds_set_key(az, key);
        if (!isempty(sas))
                return az_creds_set_sas(az, sas);
        if (!strneq(url_start, "https://", 8))
                return log_error_errno(-EPROTONOSUPPORT,
                                       "Azure managed identity tokens are only sent over https; storage.endpoint is http. "
                                       "Set AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or storage.credentials_file.");
        az->auth = AZ_AUTH_BEARER;
        az->imds = (CloudWatch) { .glue = az->os.store->glue, .event = az->os.store->event };
        az->imds.base_url = strdup(base);
        if (!az->imds.base_url)
                return -ENOMEM;
        return az_token_refresh(az);
}


/* ---- the vtable ---- */

static void az_close(Objstore *os) {
        AzStore *az = (AzStore *) os;

        azure_fetch_free(az->fetch);
        az_secret_free(&az->key);
        az_secret_free(&az->sas);
        az_secret_free(&az->token);
        free(az->imds.base_url);
        free(az->account);
        free(az->container);
        free(az->endpoint);
}

static int az_setup(Objstore *os) {
        AzStore *az = (AzStore *) os;
        Store *s = os->store;
        int r;

        az->token_expiration = USEC_INFINITY;
        r = az_location_parse(s->location, &az->account, &az->container, &os->prefix);
        if (r < 0)
                return log_error_errno(r, "Invalid Azure URL \"%s\": expected az://ACCOUNT/CONTAINER[/PREFIX].", s->url);
        r = objstore_endpoint(s, az_endpoint_check, "http(s)://HOST[:PORT][/PATH]", &az->endpoint);
        if (r < 0)
                return r;
        az->test_corrupt_md5 = !isempty(getenv("TRAINSUPD_AZ_TEST_CORRUPT_MD5"));
        return az_creds_setup(az);
}

static const ObjstoreProvider az_provider = {
        .name = "Azure",
        .what = OBJSTORE_WHAT("Put Blob", "Get Blob", "List Blobs", "Delete Blob", "(no begin)", "Put Block", "Put Block List", "(no abort)"),
        .range_header = "x-ms-range",
        .meta_sha256_header = "x-ms-meta-sha256",
        .create_only_header = "If-None-Match: *",
        .error_code_header = "x-ms-error-code",
        .list_max_env = "TRAINSUPD_AZ_TEST_MAX_RESULTS",
        .dup_fds = true,
        .commit_attempts = 1,
        .size = sizeof(AzStore),
        .open = az_setup,
        .close = az_close,
        .auth = az_auth,
        .cancel = az_cancel,
        .request = az_request,
        .parse_error = az_parse_error,
        .error_to_errno = az_error_to_errno_message,
        .list_query = az_list_query,
        .list_parse = az_list_parse,
        .get_check = az_get_check,
        .content_md5 = az_md5_base64,
        .mp_commit_method = "PUT",
        .mp_part_query = az_block_query_of,
        .mp_commit_query = az_block_list_query,
        .mp_commit_body = az_block_list_of,
};

static int az_open(Store *s, void **ret_data) {
        return objstore_open(s, &az_provider, ret_data);
}

const StoreVTable store_az_vtable = {
        .scheme = "az",
        .min_part_size = 1ULL * 1024 * 1024,
        .max_part_size = 4000ULL * 1024 * 1024,
        .max_parts = AZ_MAX_BLOCKS,
        .open = az_open,
        .close = objstore_close,
        OBJSTORE_VTABLE_OPS,
        /* Nothing to sweep: uncommitted blocks are invisible and Azure discards them by itself
         * after 7 days. */
        .sweep_uploads = NULL,
};
