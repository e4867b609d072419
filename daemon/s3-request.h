/* SPDX-License-Identifier: MIT */
#pragma once

#include "xml-walk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

/* The pure half of the S3 backend (storage-s3.c): URLs exactly as libcurl's CURLOPT_AWS_SIGV4 will
 * sign them, request bodies, and bounded parsing of the XML answers. No I/O, no logging.
 *
 * curl 7.88 signs the path and the query string as written, so everything built here is already
 * canonical: keys percent-encoded with uppercase hex (only A-Za-z0-9-._~/ raw), query parameters
 * sorted by name, every parameter written as "name=value" (also "uploads="). */

#define S3_XML_MAX XML_WALK_SIZE_MAX          /* larger answers are refused (-EFBIG) */
#define S3_XML_DEPTH_MAX XML_WALK_DEPTH_MAX    /* deeper documents are refused (-EBADMSG) */
#define S3_XML_TEXT_MAX XML_WALK_TEXT_MAX      /* longest element text kept (keys, tokens, messages) */
#define S3_LIST_PAGE_MAX 10000U           /* more <Contents> in one page: -EFBIG */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Bucket rules (3–63 characters, lower-case letters, digits, '-' and '.', starting and ending
 * with a letter or digit, no "..", not an IPv4 address). */
bool s3_bucket_name_is_valid(const char *bucket);

/* "bucket" or "bucket/prefix/path" (what follows "s3://"). ret_prefix is "" or ends with '/'.
 * -EINVAL for a bad bucket or a prefix with empty, "." or ".." components. */
int s3_location_parse(const char *location, char **ret_bucket, char **ret_prefix);

/* endpoint NULL: virtual-hosted https://BUCKET.s3.REGION.amazonaws.com/KEY; else path-style
 * ENDPOINT/BUCKET/KEY (endpoint "http(s)://host[:port]" with an optional trailing '/', no path).
 * key may be NULL or "" (the bucket itself); query (already canonical) may be NULL. */
int s3_url(const char *endpoint, const char *region, const char *bucket, const char *key, const char *query,
           char **ret);
int s3_endpoint_check(const char *endpoint);

/* Sorted ListObjectsV2 query; token may be NULL, max_keys 0 = the server's default. */
int s3_list_query(const char *prefix, const char *token, unsigned max_keys, char **ret);
/* "partNumber=N&uploadId=ID" */
int s3_part_query(unsigned part_number, const char *upload_id, char **ret);
/* "uploadId=ID" */
int s3_upload_id_query(const char *upload_id, char **ret);

/* The x-amz-content-sha256 value of a buffer (lower-case hex). */
int s3_payload_sha256(const void *data, size_t len, char ret[static 65]);

/* <CompleteMultipartUpload> with parts 1..n and their ETags (XML-escaped). */
int s3_complete_body(char * const *etags, size_t n, char **ret);

typedef struct S3Object {
        char *key;
        uint64_t size;
        usec_t modified;        /* USEC_INFINITY when missing or unparsable */
} S3Object;

typedef struct S3ListPage {
        S3Object *objects;
        size_t n_objects;
        bool truncated;
        char *next_token;       /* NULL when none */
} S3ListPage;

void s3_list_page_done(S3ListPage *p);

typedef struct S3Upload {
        char *key;
        char *upload_id;
        usec_t initiated;       /* USEC_INFINITY when missing or unparsable: an unknown age */
} S3Upload;

/* One <ListMultipartUploadsResult> page. */
typedef struct S3UploadsPage {
        S3Upload *uploads;
        size_t n_uploads;
        bool truncated;
        char *next_key_marker;          /* NULL when none */
        char *next_upload_id_marker;
} S3UploadsPage;

void s3_uploads_page_done(S3UploadsPage *p);

/* Parsers: -EBADMSG for malformed XML, a DOCTYPE/entity declaration, nesting beyond
 * S3_XML_DEPTH_MAX or missing required fields; -EFBIG beyond the size limits; an <Error>
 * document gives s3_error_to_errno() of its Code. Output untouched on failure. */
int s3_parse_list(const char *xml, size_t len, S3ListPage *ret);
/* ListMultipartUploads: an <Upload> without Key or UploadId, or truncated without
 * NextKeyMarker (it would loop forever), is -EBADMSG. */
int s3_parse_uploads(const char *xml, size_t len, S3UploadsPage *ret);
int s3_parse_initiate(const char *xml, size_t len, char **ret_upload_id);
/* The answer to CompleteMultipartUpload: 0 for <CompleteMultipartUploadResult>, the mapped error
 * for an <Error> (which S3 may send inside a 200). */
int s3_parse_complete(const char *xml, size_t len);
/* <Error><Code>..</Code><Message>..</Message></Error>: 0 and the strings (either may be NULL). */
int s3_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message);

/* S3 error code (and HTTP status when the code is unknown or NULL) → negative errno. */
int s3_error_to_errno(const char *code, long status);
bool s3_error_code_retryable(const char *code);

/* ---- Google Cloud Storage's XML API (storage-gs.c): S3's verbs, XML and error documents, with
 * its own bucket rules, host and create-only header. ---- */

#define GS_DEFAULT_ENDPOINT "https://storage.googleapis.com"
#define GS_CREATE_ONLY_HEADER "x-goog-if-generation-match: 0"

/* GCS bucket rules: 3–63 characters of lower-case letters, digits, '-', '_' and '.' (up to 222
 * with dots, each dot-separated component at most 63), starting and ending with a letter or
 * digit, no "..", not an IPv4 address, not starting with "goog", not containing "google". */
bool gs_bucket_name_is_valid(const char *bucket);

/* "bucket" or "bucket/prefix/path" (what follows "gs://"); as s3_location_parse(). */
int gs_location_parse(const char *location, char **ret_bucket, char **ret_prefix);

/* Always path-style: ENDPOINT/BUCKET/KEY, endpoint NULL = GS_DEFAULT_ENDPOINT. Key escaping and
 * query as s3_url(). */
int gs_url(const char *endpoint, const char *bucket, const char *key, const char *query, char **ret);

/* The "Authorization: Bearer TOKEN" header line; -EINVAL for an empty token or one with
 * characters that do not belong in a header. The result holds a secret: erase and free it. */
int gs_bearer_header(const char *token, char **ret);

/* GCS error code (and HTTP status) → negative errno: s3_error_to_errno() plus GCS's own codes
 * (AuthenticationRequired, TooManyRequests, ...). */
int gs_error_to_errno(const char *code, long status);
