/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "az-request.h"
#include "cloud.h"
#include "http.h"
#include "storage.h"

bool az_account_name_is_valid(const char *a) {
        size_t n = a ? strlen(a) : 0;

        if (n < 3 || n > 24)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '0' && a[i] <= '9')))
                        return false;
        return true;
}

static bool az_alnum_lower(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool az_container_name_is_valid(const char *c) {
        size_t n = c ? strlen(c) : 0;

        if (n < 3 || n > 63 || !az_alnum_lower(c[0]) || !az_alnum_lower(c[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (c[i] == '-') {
                        if (c[i - 1] == '-')
                                return false;
                } else if (!az_alnum_lower(c[i]))
                        return false;
        }
        return true;
}

static bool az_prefix_is_valid(const char *p) {
        while (*p) {
                size_t n = strcspn(p, "/");

                if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
                        return false;
                for (size_t i = 0; i < n; i++)
                        if ((unsigned char) p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\')
                                return false;
                p += n;
                if (*p == '/')
                        p++;
        }
        return true;
}

int az_location_parse(const char *location, char **ret_account, char **ret_container, char **ret_prefix) {
        _cleanup_free_ char *account = NULL, *container = NULL, *prefix = NULL;
        const char *s1 = strchr(location, '/'), *s2;
        int r;

        if (!s1)
                return -EINVAL;
        account = strndup(location, (size_t) (s1 - location));
        s2 = strchr(s1 + 1, '/');
        container = s2 ? strndup(s1 + 1, (size_t) (s2 - s1 - 1)) : strdup(s1 + 1);
        if (!account || !container)
                return -ENOMEM;
        if (!az_account_name_is_valid(account) || !az_container_name_is_valid(container))
                return -EINVAL;
        r = store_url_prefix(s2 ? s2 + 1 : "", az_prefix_is_valid, &prefix);
        if (r < 0)
                return r;
        *ret_account = TAKE_PTR(account);
        *ret_container = TAKE_PTR(container);
        *ret_prefix = TAKE_PTR(prefix);
        return 0;
}

int az_endpoint_check(const char *endpoint) {
        const char *host = store_endpoint_host(endpoint);

        if (!host)
                return -EINVAL;
        if (!*host || *host == '/' || strpbrk(host, "?#@ \t\r\n%"))
                return -EINVAL;
        return 0;
}

int az_url(const char *endpoint, const char *account, const char *container, const char *blob, const char *query,
           const char *sas, char **ret) {
        _cleanup_free_ char *eblob = NULL;
        bool q = !isempty(query), s = !isempty(sas);
        int r, n;

        r = http_url_escape(blob ?: "", "/", &eblob);
        if (r < 0)
                return r;
        if (endpoint) {
                size_t elen = strlen(endpoint);

                r = az_endpoint_check(endpoint);
                if (r < 0)
                        return r;
                while (elen > 0 && endpoint[elen - 1] == '/')
                        elen--;
                n = asprintf(ret, "%.*s/%s%s%s%s%s%s%s", (int) elen, endpoint, container, blob ? "/" : "", eblob,
                             q || s ? "?" : "", q ? query : "", q && s ? "&" : "", s ? sas : "");
        } else
                n = asprintf(ret, "https://%s.blob.core.windows.net/%s%s%s%s%s%s%s", account, container,
                             blob ? "/" : "", eblob, q || s ? "?" : "", q ? query : "", q && s ? "&" : "",
                             s ? sas : "");
        return n < 0 ? -ENOMEM : 0;
}

int az_list_query(const char *prefix, const char *marker, unsigned max_results, char **ret) {
        _cleanup_free_ char *ep = NULL, *em = NULL, *mr = NULL;
        int r;

        r = http_url_escape(prefix ?: "", NULL, &ep);
        if (r >= 0 && marker)
                r = http_url_escape(marker, NULL, &em);
        if (r < 0)
                return r;
        if (max_results > 0 && asprintf(&mr, "&maxresults=%u", max_results) < 0)
                return -ENOMEM;
        if (asprintf(ret, "restype=container&comp=list&prefix=%s%s%s%s", ep, em ? "&marker=" : "", em ?: "",
                     mr ?: "") < 0)
                return -ENOMEM;
        return 0;
}

int az_block_query(const char *block_id, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r = http_url_escape(block_id, NULL, &e);

        if (r < 0)
                return r;
        return asprintf(ret, "comp=block&blockid=%s", e) < 0 ? -ENOMEM : 0;
}

/* ---- base64, MD5, HMAC ---- */

int az_base64_encode(const void *data, size_t len, char **ret) {
        char *b;

        if (len > INT32_MAX / 2)
                return -EFBIG;
        b = malloc(4 * ((len + 2) / 3) + 1);
        if (!b)
                return -ENOMEM;
        (void) EVP_EncodeBlock((unsigned char *) b, data, (int) len);
        *ret = b;
        return 0;
}

static bool az_base64_char(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int az_base64_decode(const char *s, void **ret, size_t *ret_len) {
        size_t n = strlen(s), pad = 0;
        unsigned char *b;
        int m;

        if (n == 0 || n % 4 != 0 || n > INT32_MAX / 2)
                return -EINVAL;
        if (s[n - 1] == '=')
                pad++;
        if (s[n - 2] == '=')
                pad++;
        for (size_t i = 0; i < n - pad; i++)
                if (!az_base64_char(s[i]))
                        return -EINVAL;
        b = malloc(n / 4 * 3 + 1);
        if (!b)
                return -ENOMEM;
        m = EVP_DecodeBlock(b, (const unsigned char *) s, (int) n);
        if (m < 0 || (size_t) m < pad) {
                free(b);
                return -EINVAL;
        }
        *ret = b;
        *ret_len = (size_t) m - pad;
        return 0;
}

int az_md5_base64(const void *data, size_t len, char ret[static AZ_MD5_B64_SIZE]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        if (EVP_Digest(data ?: "", len, md, &n, EVP_md5(), NULL) != 1 || n != 16)
                return -EIO;
        (void) EVP_EncodeBlock((unsigned char *) ret, md, 16);
        return 0;
}

int az_sign(const char *key_b64, const char *string_to_sign, char **ret) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        void *key = NULL;
        size_t klen = 0;
        int r;

        r = az_base64_decode(key_b64, &key, &klen);
        if (r < 0)
                return r;
        if (!HMAC(EVP_sha256(), key, (int) klen, (const unsigned char *) string_to_sign, strlen(string_to_sign), mac,
                  &n))
                r = -EIO;
        explicit_bzero(key, klen);
        free(key);
        if (r < 0)
                return r;
        r = az_base64_encode(mac, n, ret);
        explicit_bzero(mac, sizeof(mac));
        return r;
}

/* ---- SharedKey string-to-sign ---- */

static int az_unhex(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decodes [s, s + n); '+' stays '+' (Azure's parameters are RFC 3986 encoded). */
static int az_url_decode(const char *s, size_t n, char **ret) {
        char *d = malloc(n + 1), *o = d;

        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int h, l;

                if (s[i] == '%' && i + 2 < n && (h = az_unhex(s[i + 1])) >= 0 && (l = az_unhex(s[i + 2])) >= 0) {
                        *o++ = (char) (h << 4 | l);
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = 0;
        *ret = d;
        return 0;
}

typedef struct AzParam {
        char *name, *value;
} AzParam;

static int az_param_cmp(const void *a, const void *b) {
        return strcmp(((const AzParam *) a)->name, ((const AzParam *) b)->name);
}

static void az_params_free(AzParam *p, size_t n) {
        for (size_t i = 0; p && i < n; i++) {
                free(p[i].name);
                free(p[i].value);
        }
        free(p);
}

static int az_canonical_resource(FILE *f, const char *account, const char *url) {
        const char *p = strstr(url, "://"), *q;
        AzParam *params = NULL;
        size_t n = 0, cap = 0;
        int r = 0;

        if (!p)
                return -EINVAL;
        p += 3;
        p += strcspn(p, "/?");
        q = p + strcspn(p, "?");
        fprintf(f, "/%s%.*s", account, (int) (q - p), *p == '/' ? p : "/");
        if (*q != '?')
                return 0;
        q++;
        while (*q) {
                size_t len = strcspn(q, "&"), nlen = strcspn(q, "=");
                AzParam *np;

                if (len == 0) {
                        q++;
                        continue;
                }
                if (n >= cap) {
                        cap = MAX(cap * 2, 8U);
                        np = realloc(params, cap * sizeof(AzParam));
                        if (!np) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        params = np;
                }
                params[n] = (AzParam) {};
                nlen = MIN(nlen, len);
                r = az_url_decode(q, nlen, &params[n].name);
                if (r >= 0)
                        r = az_url_decode(q + MIN(nlen + 1, len), len - MIN(nlen + 1, len), &params[n].value);
                n++;
                if (r < 0)
                        goto finish;
                for (char *c = params[n - 1].name; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char) (*c - 'A' + 'a');
                q += len;
                if (*q == '&')
                        q++;
        }
        qsort(params, n, sizeof(AzParam), az_param_cmp);
        for (size_t i = 0; i < n; i++) {
                /* A repeated name: one line, values comma-separated. */
                if (i > 0 && streq(params[i].name, params[i - 1].name))
                        fprintf(f, ",%s", params[i].value);
                else
                        fprintf(f, "\n%s:%s", params[i].name, params[i].value);
        }
finish:
        az_params_free(params, n);
        return r;
}

static int az_header_cmp(const void *a, const void *b) {
        return strcmp(*(char * const *) a, *(char * const *) b);
}

/* The value of header name in headers ("" when absent), without surrounding spaces. */
static void az_header_value(char * const *headers, const char *name, const char **ret, size_t *ret_len) {
        size_t n = strlen(name);

        *ret = "";
        *ret_len = 0;
        for (char * const *h = headers; h && *h; h++) {
                const char *v, *e;

                if (strncasecmp(*h, name, n) != 0 || (*h)[n] != ':')
                        continue;
                v = *h + n + 1;
                v += strspn(v, " \t");
                e = v + strlen(v);
                while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                *ret = v;
                *ret_len = (size_t) (e - v);
                return;
        }
}

int az_string_to_sign(const char *method, const char *account, const char *url, uint64_t content_length,
                      char * const *headers, char **ret) {
        static const char *const standard[] = { "Content-Encoding", "Content-Language", NULL, "Content-MD5",
                                                "Content-Type", "Date", "If-Modified-Since", "If-Match",
                                                "If-None-Match", "If-Unmodified-Since", "Range" };
        char *buf = NULL, **ms = NULL;
        size_t size = 0, n_ms = 0;
        FILE *f;
        int r = 0;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "%s\n", method);
        for (size_t i = 0; i < ELEMENTSOF(standard); i++) {
                const char *v;
                size_t n;

                if (!standard[i]) {
                        if (content_length > 0)
                                fprintf(f, "%" PRIu64, content_length);
                        fputc('\n', f);
                        continue;
                }
                az_header_value(headers, standard[i], &v, &n);
                fprintf(f, "%.*s\n", (int) n, v);
        }
        /* x-ms-* headers: lower-case name, sorted, "name:value\n". */
        for (char * const *h = headers; h && *h; h++) {
                const char *colon = strchr(*h, ':'), *v, *e;
                char **nm;

                if (!colon || strncasecmp(*h, "x-ms-", 5) != 0)
                        continue;
                nm = realloc(ms, (n_ms + 1) * sizeof(char *));
                if (!nm) {
                        r = -ENOMEM;
                        goto finish;
                }
                ms = nm;
                v = colon + 1 + strspn(colon + 1, " \t");
                e = v + strlen(v);
                while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                        e--;
                if (asprintf(&ms[n_ms], "%.*s:%.*s", (int) (colon - *h), *h, (int) (e - v), v) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                for (char *c = ms[n_ms]; *c != ':'; c++)
                        if (*c >= 'A' && *c <= 'Z')
                                *c = (char) (*c - 'A' + 'a');
                n_ms++;
        }
        if (n_ms > 1)
                qsort(ms, n_ms, sizeof(char *), az_header_cmp);
        for (size_t i = 0; i < n_ms; i++)
                fprintf(f, "%s\n", ms[i]);
        r = az_canonical_resource(f, account, url);
finish:
        for (size_t i = 0; i < n_ms; i++)
                free(ms[i]);
        free(ms);
        if (fclose(f) != 0 && r >= 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}

int az_authorization(const char *key_b64, const char *method, const char *account, const char *url,
                     uint64_t content_length, char * const *headers, char **ret) {
        _cleanup_free_ char *sts = NULL, *sig = NULL;
        int r;

        r = az_string_to_sign(method, account, url, content_length, headers, &sts);
        if (r >= 0)
                r = az_sign(key_b64, sts, &sig);
        if (r < 0)
                return r;
        return asprintf(ret, "SharedKey %s:%s", account, sig) < 0 ? -ENOMEM : 0;
}

int az_sas_normalize(const char *token, char **ret) {
        const char *t = token;
        char *c;

        if (!t)
                return -EINVAL;
        if (*t == '?')
                t++;
        if (!*t || strlen(t) > AZ_SAS_MAX || strpbrk(t, " \t\r\n#?"))
                return -EINVAL;
        if (!strneq(t, "sig=", 4) && !strstr(t, "&sig="))
                return -EINVAL;
        for (const char *p = t; *p; p++)
                if ((unsigned char) *p < 0x21 || (unsigned char) *p > 0x7e)
                        return -EINVAL;
        c = strdup(t);
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

int az_format_date(usec_t realtime, char ret[static 32]) {
        static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t t = (time_t) (realtime / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return -EINVAL;
        snprintf(ret, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
                 months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        return 0;
}

int az_block_id(size_t i, char ret[static AZ_BLOCK_ID_SIZE]) {
        char raw[16];

        if (i >= 1000000)
                return -EINVAL;
        snprintf(raw, sizeof(raw), "block-%06zu", i);
        (void) EVP_EncodeBlock((unsigned char *) ret, (const unsigned char *) raw, 12);
        return 0;
}

int az_block_list_body(size_t n_blocks, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (n_blocks == 0 || n_blocks > AZ_MAX_BLOCKS)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>", f);
        for (size_t i = 0; i < n_blocks; i++) {
                char id[AZ_BLOCK_ID_SIZE];

                (void) az_block_id(i, id);
                fprintf(f, "<Latest>%s</Latest>", id); /* base64 of A-Za-z0-9-: nothing to escape */
        }
        fputs("</BlockList>", f);
        if (ferror(f) || fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* ---- bounded XML walking ---- */

/* The walk (xml-walk.c), and an <Error> document as az_error_to_errno() of its Code. */
static int az_xml_walk(XmlWalk *x, const char *xml, size_t len) {
        int r;

        r = xml_walk_run(x, xml, len);
        if (r < 0)
                return r;
        return xml_walk_is_error(x) ? az_error_to_errno(x->code, 0) : 0;
}

/* ---- List Blobs ---- */

void az_list_page_done(AzListPage *p) {
        for (size_t i = 0; p && i < p->n_blobs; i++)
                free(p->blobs[i].name);
        if (p) {
                free(p->blobs);
                free(p->next_marker);
                *p = (AzListPage) {};
        }
}

static int az_parse_u64(const char *s, uint64_t *ret) {
        unsigned long long v;
        char *end;

        if (!*s || *s < '0' || *s > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EBADMSG;
        *ret = v;
        return 0;
}

/* EnumerationResults / Blobs / Blob / {Name, Properties / {Content-Length, Last-Modified}} */
static int az_list_on_start(XmlWalk *x, unsigned depth, const char *name) {
        AzListPage *p = x->userdata;
        AzBlob *b;

        if (x->depth == 1 && !streq(name, "EnumerationResults"))
                return -EBADMSG;
        if (x->depth != 3 || !streq(name, "Blob") || !xml_walk_at(x, 2, "Blobs"))
                return 0;
        if (p->n_blobs >= AZ_LIST_PAGE_MAX)
                return -EFBIG;
        b = realloc(p->blobs, (p->n_blobs + 1) * sizeof(AzBlob));
        if (!b)
                return -ENOMEM;
        p->blobs = b;
        p->blobs[p->n_blobs++] = (AzBlob) { .size = UINT64_MAX, .modified = USEC_INFINITY };
        return 0;
}

static int az_list_on_end(XmlWalk *x, unsigned depth, const char *name, const char *text, size_t len,
                          bool overflow) {
        AzListPage *p = x->userdata;
        bool in_blob = x->depth >= 3 && xml_walk_at(x, 2, "Blobs") && xml_walk_at(x, 3, "Blob") && p->n_blobs > 0;
        AzBlob *b = in_blob ? &p->blobs[p->n_blobs - 1] : NULL;

        if (x->depth == 2 && streq(name, "NextMarker")) {
                if (overflow)
                        return -EFBIG;
                if (len == 0)
                        return 0;
                return xml_walk_take(&p->next_marker, text, len);
        }
        if (!b)
                return 0;
        if (x->depth == 3)
                return b->name && b->size != UINT64_MAX ? 0 : -EBADMSG;
        if (x->depth == 4 && streq(name, "Name")) {
                if (overflow)
                        return -EFBIG;
                if (len == 0 || memchr(text, 0, len))
                        return -EBADMSG;
                return xml_walk_take(&b->name, text, len);
        }
        if (x->depth == 5 && xml_walk_at(x, 4, "Properties")) {
                if (streq(name, "Content-Length"))
                        return overflow ? -EBADMSG : az_parse_u64(text, &b->size);
                if (streq(name, "Last-Modified") && (overflow || parse_http_date(text, &b->modified) < 0))
                        b->modified = USEC_INFINITY;
        }
        return 0;
}

int az_parse_list(const char *xml, size_t len, AzListPage *ret) {
        AzListPage p = {};
        XmlWalk x = { .on_start = az_list_on_start, .on_end = az_list_on_end, .userdata = &p };
        int r;

        r = az_xml_walk(&x, xml, len);
        xml_walk_done(&x);
        if (r >= 0 && !streq(xml_walk_root(&x), "EnumerationResults"))
                r = -EBADMSG;
        if (r < 0) {
                az_list_page_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

int az_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message) {
        XmlWalk x = {};
        int r;

        r = az_xml_walk(&x, xml, len);
        r = xml_walk_error_document(&x, r, ret_code, ret_message);
        xml_walk_done(&x);
        return r;
}

/* ---- errors ---- */

static const struct {
        const char *code;
        int error;
} az_errors[] = {
        { "BlobNotFound", -ENOENT },
        { "ContainerNotFound", -ENOENT },
        { "ResourceNotFound", -ENOENT },
        { "BlobAlreadyExists", -EEXIST },
        { "ConditionNotMet", -EEXIST },
        { "Md5Mismatch", -EBADMSG },
        { "InvalidMd5", -EBADMSG },
        { "AuthenticationFailed", -EACCES },
        { "AuthorizationFailure", -EACCES },
        { "AuthorizationPermissionMismatch", -EACCES },
        { "AuthorizationResourceTypeMismatch", -EACCES },
        { "InvalidAuthenticationInfo", -EACCES },
        { "InsufficientAccountPermissions", -EACCES },
        { "InvalidRange", -ERANGE },
        { "InvalidBlockId", -EINVAL },
        { "InvalidBlockList", -EINVAL },
        { "RequestBodyTooLarge", -EFBIG },
        { "ServerBusy", -EAGAIN },
        { "InternalError", -EIO },
        { "OperationTimedOut", -ETIMEDOUT },
};

int az_error_to_errno(const char *code, long status) {
        for (size_t i = 0; code && i < ELEMENTSOF(az_errors); i++)
                if (streq(code, az_errors[i].code))
                        return az_errors[i].error;
        if (status > 0)
                return http_error_from_status(status) ?: -EIO;
        return -EIO;
}

bool az_error_code_retryable(const char *code) {
        return code && (streq(code, "ServerBusy") || streq(code, "InternalError") ||
                        streq(code, "OperationTimedOut"));
}

int az_error_to_errno_message(const char *code, const char *message, long status) {
        if (code && streq(code, "InvalidOperation") && message && strcasestr(message, "md5"))
                return -EBADMSG;
        return az_error_to_errno(code, status);
}
