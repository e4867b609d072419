/* SPDX-License-Identifier: MIT */
#pragma once

#include "xml-walk.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

/* The pure half of the Azure Blob backend (storage-az.c): URLs, SharedKey signatures, SAS,
 * block ids, request bodies and bounded parsing of the XML answers. No I/O, no logging.
 *
 * URLs: "az://ACCOUNT/CONTAINER[/PREFIX]". Without storage.endpoint the blob endpoint is
 * https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB. With one, it is path-style:
 * ENDPOINT/CONTAINER/BLOB, where ENDPOINT is "http(s)://host[:port][/path]" — azurite's is
 * "http://127.0.0.1:10000/devstoreaccount1" (its account is the first path segment).
 *
 * SharedKey (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key),
 * version 2015-02-21 and later:
 *
 *   VERB \n Content-Encoding \n Content-Language \n Content-Length (empty when 0) \n
 *   Content-MD5 \n Content-Type \n Date \n If-Modified-Since \n If-Match \n If-None-Match \n
 *   If-Unmodified-Since \n Range \n
 *   CanonicalizedHeaders: every x-ms-* header, name lower-cased, sorted, "name:value\n"
 *   CanonicalizedResource: "/" ACCOUNT URL-PATH, then per query parameter (names lower-cased,
 *   sorted; names and values percent-decoded) "\nname:value".
 *
 * URL-PATH is the request's path exactly as sent (percent-encoded), including any path of the
 * endpoint. So with path-style azurite the signed resource is
 * "/devstoreaccount1/devstoreaccount1/CONTAINER/BLOB" — the account twice, once as the account
 * and once as the first segment of the path — which is what azurite checks. The signature is
 * base64(HMAC-SHA256(base64-decoded account key, string-to-sign)), sent as
 * "Authorization: SharedKey ACCOUNT:SIGNATURE". Dates go in x-ms-date (Date stays empty).
 *
 * SAS: the token's query ("sv=...&sig=...", a leading '?' is dropped) is appended to every URL
 * after our own parameters; nothing is signed by us. */

#define AZ_API_VERSION "2021-08-06"              /* ≥ 2017-11-09, which Bearer tokens need */
#define AZ_XML_MAX XML_WALK_SIZE_MAX             /* larger answers are refused (-EFBIG) */
#define AZ_XML_DEPTH_MAX XML_WALK_DEPTH_MAX      /* deeper documents are refused (-EBADMSG) */
#define AZ_XML_TEXT_MAX XML_WALK_TEXT_MAX        /* longest element text kept */
#define AZ_LIST_PAGE_MAX 10000U                  /* more <Blob>s in one page: -EFBIG */
#define AZ_MAX_BLOCKS 50000U
#define AZ_BLOCK_ID_SIZE 17U                     /* base64 of 12 bytes and a NUL */
#define AZ_SAS_MAX 4096U
#define AZ_MD5_B64_SIZE 25U                      /* base64 of 16 bytes and a NUL */

/* Account: 3–24 lower-case letters and digits. Container: 3–63 lower-case letters, digits and
 * '-', starting and ending with a letter or digit, no "--". */
bool az_account_name_is_valid(const char *account);
bool az_container_name_is_valid(const char *container);

/* "ACCOUNT/CONTAINER[/PREFIX]". ret_prefix is "" or ends with '/'. -EINVAL for bad names or a
 * prefix with empty, "." or ".." components. */
int az_location_parse(const char *location, char **ret_account, char **ret_container, char **ret_prefix);

/* -EINVAL unless "http(s)://host[:port][/path]" without query, fragment, user info or spaces. */
int az_endpoint_check(const char *endpoint);

/* The URL of CONTAINER/BLOB (blob may be NULL: the container itself). query (already encoded,
 * may be NULL) and sas (may be NULL) are appended in that order. */
int az_url(const char *endpoint, const char *account, const char *container, const char *blob, const char *query,
           const char *sas, char **ret);

/* "?restype=container&comp=list&prefix=..[&marker=..][&maxresults=N]" without the '?'. */
int az_list_query(const char *prefix, const char *marker, unsigned max_results, char **ret);
/* "comp=block&blockid=<escaped id>" */
int az_block_query(const char *block_id, char **ret);

/* The block id of block i (0-based): base64 of the 12 characters "block-%06zu" — every id of a
 * blob has the same length, as Azure requires (and only A-Za-z0-9 come out). i < 10^6. */
int az_block_id(size_t i, char ret[static AZ_BLOCK_ID_SIZE]);

/* <?xml ...?><BlockList><Latest>id</Latest>...</BlockList> */
int az_block_list_body(size_t n_blocks, char **ret);

/* headers: "Name: value" lines (the ones the request will carry; Content-MD5, Content-Type,
 * If-None-Match, Range and every x-ms-* are used, others ignored); content_length: the body's. */
int az_string_to_sign(const char *method, const char *account, const char *url, uint64_t content_length,
                      char * const *headers, char **ret);
/* The base64 signature of string_to_sign with the base64 account key. -EINVAL for a key that is
 * not base64. */
int az_sign(const char *key_b64, const char *string_to_sign, char **ret);
/* "SharedKey ACCOUNT:SIGNATURE" for a request (az_string_to_sign + az_sign). */
int az_authorization(const char *key_b64, const char *method, const char *account, const char *url,
                     uint64_t content_length, char * const *headers, char **ret);

/* A SAS token as given (env or file): drops a leading '?', refuses whitespace, '#', and
 * anything longer than AZ_SAS_MAX or without "sig=". */
int az_sas_normalize(const char *token, char **ret);

/* RFC 1123 date for x-ms-date. */
int az_format_date(usec_t realtime, char ret[static 32]);

int az_base64_encode(const void *data, size_t len, char **ret);
/* -EINVAL for anything but padded standard base64. */
int az_base64_decode(const char *s, void **ret, size_t *ret_len);
/* Content-MD5 value (base64) of a buffer. */
int az_md5_base64(const void *data, size_t len, char ret[static AZ_MD5_B64_SIZE]);

typedef struct AzBlob {
        char *name;
        uint64_t size;
        usec_t modified;        /* USEC_INFINITY when missing or unparsable */
} AzBlob;

typedef struct AzListPage {
        AzBlob *blobs;
        size_t n_blobs;
        char *next_marker;      /* NULL when this was the last page */
} AzListPage;

void az_list_page_done(AzListPage *p);

/* Parsers: -EBADMSG for malformed XML, a DOCTYPE/entity declaration, nesting beyond
 * AZ_XML_DEPTH_MAX or missing required fields; -EFBIG beyond the size limits; an <Error>
 * document gives az_error_to_errno() of its Code. Output untouched on failure. */
int az_parse_list(const char *xml, size_t len, AzListPage *ret);
/* <Error><Code>..</Code><Message>..</Message></Error>: 0 and the strings (either may be NULL). */
int az_parse_error(const char *xml, size_t len, char **ret_code, char **ret_message);

/* Azure error code (x-ms-error-code or <Code>) → negative errno; status when the code is
 * unknown or NULL. */
int az_error_to_errno(const char *code, long status);
bool az_error_code_retryable(const char *code);
/* Like az_error_to_errno(), and azurite's "InvalidOperation: Provided contentMD5 doesn't match"
 * (Azure itself says Md5Mismatch) is -EBADMSG too. message may be NULL. */
int az_error_to_errno_message(const char *code, const char *message, long status);
