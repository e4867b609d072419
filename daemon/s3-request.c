/* SPDX-License-Identifier: MIT */
#include <inttypes.h>
#include <stdio.h>

#include "http.h"
#include "s3-request.h"
#include "sha256.h"
#include "storage.h"
#include "xml-walk.h"

#define S3_ESCAPE_KEY_SAFE "/"

bool s3_bucket_name_is_valid(const char *b) {
        size_t n = b ? strlen(b) : 0;
        unsigned dots = 0, digits_only = 1;

        if (n < 3 || n > 63)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = b[i];

                if (c == '.') {
                        dots++;
                        if (i > 0 && b[i - 1] == '.')
                                return false;
                } else if (c >= '0' && c <= '9')
                        ;
                else if ((c >= 'a' && c <= 'z') || c == '-')
                        digits_only = 0;
                else
                        return false;
        }
        if (!((b[0] >= 'a' && b[0] <= 'z') || (b[0] >= '0' && b[0] <= '9')))
                return false;
        if (!((b[n - 1] >= 'a' && b[n - 1] <= 'z') || (b[n - 1] >= '0' && b[n - 1] <= '9')))
                return false;
        if (dots == 3 && digits_only)
                return false; /* looks like an IPv4 address */
        return true;
}

static bool s3_prefix_is_valid(const char *p) {
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

/* "BUCKET[/PREFIX]", the bucket accepted by bucket_valid. */
static int bucket_location_parse(const char *location, bool (*bucket_valid)(const char *), char **ret_bucket,
                                 char **ret_prefix) {
        _cleanup_free_ char *bucket = NULL, *prefix = NULL;
        const char *slash = strchr(location, '/');
        int r;

        bucket = slash ? strndup(location, (size_t) (slash - location)) : strdup(location);
        if (!bucket)
                return -ENOMEM;
        if (!bucket_valid(bucket))
                return -EINVAL;
        r = store_url_prefix(slash ? slash + 1 : "", s3_prefix_is_valid, &prefix);
        if (r < 0)
                return r;
        *ret_bucket = TAKE_PTR(bucket);
        *ret_prefix = TAKE_PTR(prefix);
        return 0;
}

int s3_location_parse(const char *location, char **ret_bucket, char **ret_prefix) {
        return bucket_location_parse(location, s3_bucket_name_is_valid, ret_bucket, ret_prefix);
}

int s3_endpoint_check(const char *endpoint) {
        const char *host = store_endpoint_host(endpoint);

        if (!host)
                return -EINVAL;
        if (!*host || *host == '/' || strpbrk(host, "?#@ \t\r\n"))
                return -EINVAL;
        host += strcspn(host, "/");
        if (*host && !streq(host, "/"))
                return -EINVAL; /* a path in the endpoint is not supported */
        return 0;
}

int s3_url(const char *endpoint, const char *region, const char *bucket, const char *key, const char *query,
           char **ret) {
        _cleanup_free_ char *ekey = NULL;
        const char *q = isempty(query) ? "" : "?";
        int r, n;

        r = http_url_escape(key ?: "", S3_ESCAPE_KEY_SAFE, &ekey);
        if (r < 0)
                return r;
        if (endpoint) {
                size_t elen = strlen(endpoint);

                r = s3_endpoint_check(endpoint);
                if (r < 0)
                        return r;
                if (elen > 0 && endpoint[elen - 1] == '/')
                        elen--;
                n = asprintf(ret, "%.*s/%s/%s%s%s", (int) elen, endpoint, bucket, ekey, q, query ?: "");
        } else {
                if (isempty(region) || strpbrk(region, "/?#@:. "))
                        return -EINVAL;
                n = asprintf(ret, "https://%s.s3.%s.amazonaws.com/%s%s%s", bucket, region, ekey, q, query ?: "");
        }
        return n < 0 ? -ENOMEM : 0;
}

int s3_list_query(const char *prefix, const char *token, unsigned max_keys, char **ret) {
        _cleanup_free_ char *ep = NULL, *et = NULL, *mk = NULL;
        int r;

        /* Sorted: continuation-token < list-type < max-keys < prefix. '/' is encoded in values. */
        r = http_url_escape(prefix ?: "", NULL, &ep);
        if (r < 0)
                return r;
        if (token) {
                r = http_url_escape(token, NULL, &et);
                if (r < 0)
                        return r;
        }
        if (max_keys > 0 && asprintf(&mk, "max-keys=%u&", max_keys) < 0)
                return -ENOMEM;
        if (asprintf(ret, "%s%s%slist-type=2&%sprefix=%s", et ? "continuation-token=" : "", et ?: "", et ? "&" : "",
                     mk ?: "", ep) < 0)
                return -ENOMEM;
        return 0;
}

int s3_upload_id_query(const char *upload_id, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r = http_url_escape(upload_id, NULL, &e);

        if (r < 0)
                return r;
        return asprintf(ret, "uploadId=%s", e) < 0 ? -ENOMEM : 0;
}

int s3_part_query(unsigned part_number, const char *upload_id, char **ret) {
        _cleanup_free_ char *e = NULL;
        int r = http_url_escape(upload_id, NULL, &e);

        if (r < 0)
                return r;
        return asprintf(ret, "partNumber=%u&uploadId=%s", part_number, e) < 0 ? -ENOMEM : 0;
}

int s3_payload_sha256(const void *data, size_t len, char ret[static 65]) {
        uint8_t d[SHA256_DIGEST_SIZE];
        int r = sha256_buffer(data ?: "", len, d);

        if (r < 0)
                return r;
        sha256_to_hex(d, ret);
        return 0;
}

static int xml_escape_append(FILE *f, const char *s) {
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", f); break;
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '"': fputs("&quot;", f); break;
                case '\'': fputs("&apos;", f); break;
                default: fputc(*s, f);
                }
        }
        return 0;
}

int s3_complete_body(char * const *etags, size_t n, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (n == 0)
                return -EINVAL;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fputs("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">", f);
        for (size_t i = 0; i < n; i++) {
                fprintf(f, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
                xml_escape_append(f, etags[i] ?: "");
                fputs("</ETag></Part>", f);
        }
        fputs("</CompleteMultipartUpload>", f);
        if (ferror(f) || fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

/* ---- XML answers ---- */

/* The walk (xml-walk.c), and an <Error> document as s3_error_to_errno() of its Code. An element
 * text cut at XML_WALK_TEXT_MAX fails the walk down to the depth of keys and tokens. */
static int s3_xml_walk(XmlWalk *w, const char *xml, size_t len) {
        int r;

        w->overflow_fails_to_depth = 3;
        r = xml_walk_run(w, xml, len);
        if (r < 0)
                return r;
        return xml_walk_is_error(w) ? s3_error_to_errno(w->code, 0) : 0;
}

/* ---- ListObjectsV2 ---- */

void s3_list_page_done(S3ListPage *p) {
        for (size_t i = 0; p && i < p->n_objects; i++)
                free(p->objects[i].key);
        free(p->objects);
        free(p->next_token);
        *p = (S3ListPage) {};
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!*s || *s < '0' || *s > '9')
                return -EBADMSG;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EBADMSG;
        *ret = v;
        return 0;
}

static int list_on_start(XmlWalk *w, unsigned depth, const char *name) {
        S3ListPage *p = w->userdata;
        S3Object *o;

        if (depth != 2 || !streq(name, "Contents"))
                return 0;
        if (p->n_objects >= S3_LIST_PAGE_MAX)
                return -EFBIG;
        o = realloc(p->objects, (p->n_objects + 1) * sizeof(S3Object));
        if (!o)
                return -ENOMEM;
        p->objects = o;
        p->objects[p->n_objects++] = (S3Object) { .modified = USEC_INFINITY, .size = UINT64_MAX };
        return 0;
}

static int list_on_end(XmlWalk *w, unsigned depth, const char *name, const char *text, size_t len,
                       bool overflow) {
        S3ListPage *p = w->userdata;
        S3Object *o;

        if (depth == 1 && !streq(name, "ListBucketResult"))
                return -EBADMSG;
        if (depth == 2 && streq(name, "IsTruncated"))
                p->truncated = streq(text, "true");
        else if (depth == 2 && streq(name, "NextContinuationToken"))
                return xml_walk_take(&p->next_token, text, len);
        else if (depth == 2 && streq(name, "Contents")) {
                o = &p->objects[p->n_objects - 1];
                if (!o->key || o->size == UINT64_MAX)
                        return -EBADMSG;
        }
        if (depth != 3 || !streq(w->path[2], "Contents") || p->n_objects == 0)
                return 0;
        o = &p->objects[p->n_objects - 1];
        if (streq(name, "Key")) {
                if (len == 0 || memchr(text, 0, len))
                        return -EBADMSG;
                return xml_walk_take(&o->key, text, len);
        }
        if (streq(name, "Size"))
                return parse_u64(text, &o->size);
        if (streq(name, "LastModified") && parse_rfc3339(text, &o->modified) < 0)
                o->modified = USEC_INFINITY;
        return 0;
}

int s3_parse_list(const char *xml, size_t len, S3ListPage *ret) {
        S3ListPage p = {};
        XmlWalk w = { .on_start = list_on_start, .on_end = list_on_end, .userdata = &p };
        int r;

        r = s3_xml_walk(&w, xml, len);
        xml_walk_done(&w);
        if (r >= 0 && !streq(xml_walk_root(&w), "ListBucketResult"))
                r = -EBADMSG;
        if (r >= 0 && p.truncated && !p.next_token)
                r = -EBADMSG; /* would loop forever */
        if (r < 0) {
                s3_list_page_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- ListMultipartUploads ---- */

void s3_uploads_page_done(S3UploadsPage *p) {
        for (size_t i = 0; p && i < p->n_uploads; i++) {
                free(p->uploads[i].key);
                free(p->uploads[i].upload_id);
        }
        free(p->uploads);
        free(p->next_key_marker);
        free(p->next_upload_id_marker);
        *p = (S3UploadsPage) {};
}

static int uploads_on_start(XmlWalk *w, unsigned depth, const char *name) {
        S3UploadsPage *p = w->userdata;
        S3Upload *u;

        if (depth == 1 && !streq(name, "ListMultipartUploadsResult"))
                return -EBADMSG;
        if (depth != 2 || !streq(name, "Upload"))
                return 0;
        if (p->n_uploads >= S3_LIST_PAGE_MAX)
                return -EFBIG;
        u = realloc(p->uploads, (p->n_uploads + 1) * sizeof(S3Upload));
        if (!u)
                return -ENOMEM;
        p->uploads = u;
        p->uploads[p->n_uploads++] = (S3Upload) { .initiated = USEC_INFINITY };
        return 0;
}

static int uploads_on_end(XmlWalk *w, unsigned depth, const char *name, const char *text, size_t len,
                          bool overflow) {
        S3UploadsPage *p = w->userdata;
        S3Upload *u;

        if (depth == 2 && streq(name, "IsTruncated"))
                p->truncated = streq(text, "true");
        else if (depth == 2 && streq(name, "NextKeyMarker") && len > 0)
                return xml_walk_take(&p->next_key_marker, text, len);
        else if (depth == 2 && streq(name, "NextUploadIdMarker") && len > 0)
                return xml_walk_take(&p->next_upload_id_marker, text, len);
        else if (depth == 2 && streq(name, "Upload")) {
                u = &p->uploads[p->n_uploads - 1];
                if (!u->key || !u->upload_id)
                        return -EBADMSG;
        }
        if (depth != 3 || !streq(w->path[2], "Upload") || p->n_uploads == 0)
                return 0;
        u = &p->uploads[p->n_uploads - 1];
        if (streq(name, "Key"))
                return len == 0 || memchr(text, 0, len) ? -EBADMSG : xml_walk_take(&u->key, text, len);
        if (streq(name, "UploadId"))
                return len == 0 || len > 1024 || memchr(text, 0, len) ? -EBADMSG
                                                                       : xml_walk_take(&u->upload_id, text, len);
        if (streq(name, "Initiated") && parse_rfc3339(text, &u->initiated) < 0)
                u->initiated = USEC_INFINITY;
        return 0;
}

int s3_parse_uploads(const char *xml, size_t len, S3UploadsPage *ret) {
        S3UploadsPage p = {};
        XmlWalk w = { .on_start = uploads_on_start, .on_end = uploads_on_end, .userdata = &p };
        int r;

        r = s3_xml_walk(&w, xml, len);
        xml_walk_done(&w);
        if (r >= 0 && !streq(xml_walk_root(&w), "ListMultipartUploadsResult"))
                r = -EBADMSG;
        if (r >= 0 && p.truncated && !p.next_key_marker)
                r = -EBADMSG; /* would loop forever */
        if (r < 0) {
                s3_uploads_page_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* ---- multipart ---- */

static int initiate_on_end(XmlWalk *w, unsigned depth, const char *name, const char *text, size_t len,
                           bool overflow) {
        char **id = w->userdata;

        if (depth == 2 && streq(name, "UploadId")) {
                if (len == 0 || len > 1024)
                        return -EBADMSG;
                return xml_walk_take(id, text, len);
        }
        return 0;
}

int s3_parse_initiate(const char *xml, size_t len, char **ret_upload_id) {
        _cleanup_free_ char *id = NULL;
        XmlWalk w = { .on_end = initiate_on_end, .userdata = &id };
        int r;

        r = s3_xml_walk(&w, xml, len);
        xml_walk_done(&w);
        if (r < 0)
                return r;
        if (!streq(xml_walk_root(&w), "InitiateMultipartUploadResult") || !id)
                return -EBADMSG;
        *ret_upload_id = TAKE_PTR(id);
        return 0;
}

int s3_parse_complete(const char *xml, size_t len) {
        XmlWalk w = {};
        int r;

        r = s3_xml_walk(&w, xml, len);
        xml_walk_done(&w);
        if (r < 0)
                return r;
        return streq(xml_walk_root(&w), "CompleteMultipartUploadResult") ? 0 : -EBADMSG;
}

int s3_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message) {
        XmlWalk w = {};
        int r;

        r = s3_xml_walk(&w, xml, len);
        r = xml_walk_error_document(&w, r, ret_code, ret_message);
        xml_walk_done(&w);
        return r;
}

/* ---- errors ---- */

static const struct {
        const char *code;
        int error;
} s3_errors[] = {
        { "NoSuchKey", -ENOENT },
        { "NoSuchBucket", -ENOENT },
        { "NoSuchUpload", -ENOENT },
        { "PreconditionFailed", -EEXIST },
        { "BadDigest", -EBADMSG },
        { "XAmzContentSHA256Mismatch", -EBADMSG },
        { "InvalidDigest", -EBADMSG },
        { "AccessDenied", -EACCES },
        { "SignatureDoesNotMatch", -EACCES },
        { "InvalidAccessKeyId", -EACCES },
        { "ExpiredToken", -EACCES },
        { "InvalidToken", -EACCES },
        { "RequestTimeTooSkewed", -EACCES },
        { "EntityTooSmall", -EINVAL },
        { "EntityTooLarge", -EFBIG },
        { "InvalidPart", -EINVAL },
        { "InvalidPartOrder", -EINVAL },
        { "InvalidRange", -ERANGE },
        { "SlowDown", -EAGAIN },
        { "RequestTimeout", -ETIMEDOUT },
        { "InternalError", -EIO },
        { "ServiceUnavailable", -EIO },
        { "OperationAborted", -EAGAIN },
};

int s3_error_to_errno(const char *code, long status) {
        for (size_t i = 0; code && i < ELEMENTSOF(s3_errors); i++)
                if (streq(code, s3_errors[i].code))
                        return s3_errors[i].error;
        if (status > 0)
                return http_error_from_status(status) ?: -EIO;
        return -EIO;
}

bool s3_error_code_retryable(const char *code) {
        return code && (streq(code, "SlowDown") || streq(code, "InternalError") ||
                        streq(code, "ServiceUnavailable") || streq(code, "RequestTimeout") ||
                        streq(code, "OperationAborted"));
}

/* ---- Google Cloud Storage XML API ---- */

static bool gs_char_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool gs_bucket_name_is_valid(const char *b) {
        size_t n = b ? strlen(b) : 0, comp = 0;
        unsigned dots = 0;
        bool digits_only = true;

        if (n < 3 || n > 222 || !gs_char_alnum(b[0]) || !gs_char_alnum(b[n - 1]))
                return false;
        if (strneq(b, "goog", 4) || strstr(b, "google"))
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = b[i];

                if (c == '.') {
                        if (b[i - 1] == '.' || comp == 0)
                                return false;
                        dots++;
                        comp = 0;
                        continue;
                }
                if (!gs_char_alnum(c) && c != '-' && c != '_')
                        return false;
                if (c < '0' || c > '9')
                        digits_only = false;
                if (++comp > 63)
                        return false;
        }
        if (dots == 0 && n > 63)
                return false;
        return !(dots == 3 && digits_only); /* an IPv4 address */
}

int gs_location_parse(const char *location, char **ret_bucket, char **ret_prefix) {
        return bucket_location_parse(location, gs_bucket_name_is_valid, ret_bucket, ret_prefix);
}

int gs_url(const char *endpoint, const char *bucket, const char *key, const char *query, char **ret) {
        return s3_url(endpoint ?: GS_DEFAULT_ENDPOINT, NULL, bucket, key, query, ret);
}

int gs_bearer_header(const char *token, char **ret) {
        if (isempty(token) || strlen(token) > 8192)
                return -EINVAL;
        for (const char *p = token; *p; p++)
                if ((unsigned char) *p <= 0x20 || (unsigned char) *p >= 0x7f)
                        return -EINVAL;
        return asprintf(ret, "Authorization: Bearer %s", token) < 0 ? -ENOMEM : 0;
}

int gs_error_to_errno(const char *code, long status) {
        static const struct {
                const char *code;
                int error;
        } table[] = {
                { "AuthenticationRequired", -EACCES },
                { "MissingSecurityHeader", -EACCES },
                { "InvalidSecurity", -EACCES },
                { "UserProjectMissing", -EACCES },
                { "AccountProblem", -EACCES },
                { "TooManyRequests", -EAGAIN },
                { "RateLimitExceeded", -EAGAIN },
                { "InvalidArgument", -EINVAL },
        };

        for (size_t i = 0; code && i < ELEMENTSOF(table); i++)
                if (streq(code, table[i].code))
                        return table[i].error;
        return s3_error_to_errno(code, status);
}
