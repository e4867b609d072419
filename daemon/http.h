/* SPDX-License-Identifier: MIT */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "curl-glue.h"
#include "macro.h"
#include "time-util.h"

/* One HTTP request, used by everything that talks HTTP: the metadata services, the object
 * stores and the Docker socket. Runs on the event loop through CurlGlue; retries with
 * exponential back-off and jitter; the response body is kept in memory up to a cap. */
typedef struct HttpRequest HttpRequest;

/* error: 0 for a 2xx answer, else a negative errno (http_error_from_status/curl). The status,
 * headers and body of the last attempt stay readable from the request. The callback may free
 * the request. */
typedef void (*HttpRequestDone)(HttpRequest *req, int error, void *userdata);

#define HTTP_DEFAULT_MAX_RESPONSE (4U * 1024U * 1024U)
#define HTTP_DEFAULT_CONNECT_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define HTTP_DEFAULT_TOTAL_TIMEOUT_USEC (30 * USEC_PER_SEC)

int http_request_new(HttpRequest **ret, CurlGlue *glue, const char *method, const char *url);
HttpRequest *http_request_free(HttpRequest *req);
DEFINE_CLEANUP_FUNC(HttpRequest *, http_request_free);

int http_request_add_header(HttpRequest *req, const char *format, ...) _printf_(2, 3);
/* Copies the body. */
int http_request_set_body(HttpRequest *req, const void *data, size_t len);
/* The body is [offset, offset + len) of fd, read with pread as it is sent (large uploads never sit
 * in memory); the caller keeps fd open while the request runs. Re-read from offset on a retry. */
void http_request_set_body_fd(HttpRequest *req, int fd, uint64_t offset, uint64_t len);
void http_request_set_max_response(HttpRequest *req, size_t max);
void http_request_set_timeouts(HttpRequest *req, usec_t connect, usec_t total);
/* attempts ≥ 1 (1 = no retry); back-off doubles from base up to max, with jitter. */
void http_request_set_retry(HttpRequest *req, unsigned attempts, usec_t base, usec_t max);
/* Absolute CLOCK_BOOTTIME deadline: no attempt starts after it and each is cut short by it. */
void http_request_set_deadline(HttpRequest *req, usec_t deadline);
/* Talk HTTP over a unix socket (the URL's host is then only a name). */
int http_request_set_unix_socket(HttpRequest *req, const char *path);
/* Bypass any proxy from the environment (Azure's IMDS must be reached directly). */
void http_request_set_no_proxy(HttpRequest *req, bool b);
int http_request_set_ca_file(HttpRequest *req, const char *path);
/* Statuses the caller wants as 0 even though they are not 2xx (e.g. 404 = "no notice"). */
void http_request_set_accept_status(HttpRequest *req, long status);
/* Streams the body of a 2xx answer to fn as it arrives instead of keeping it (the cap does not
 * apply); a non-2xx body is still kept for the error message. fn returns 0, or a negative errno
 * to abort the transfer (the done callback then gets that error). fn must not free the request.
 * Give a streaming request an infinite total timeout (USEC_INFINITY): Docker's log and wait
 * streams stay open for as long as the task runs. */
typedef int (*HttpStreamFunc)(HttpRequest *req, const char *data, size_t len, void *userdata);
void http_request_set_stream(HttpRequest *req, HttpStreamFunc fn, void *userdata);

/* Signs the request with libcurl's AWS SigV4 (provider "aws:amz:REGION:SERVICE"). http.c then
 * leaves out its "Expect:" header: libcurl 7.88 signs every custom header, also an empty one that
 * it never sends, and the server's signature would differ. */
int http_request_set_aws_sigv4(HttpRequest *req, const char *provider, const char *key_id, const char *secret);

/* Lets a caller set further curl options (SigV4, ...) before start. */
CURL *http_request_get_curl(HttpRequest *req);

int http_request_start(HttpRequest *req, HttpRequestDone done, void *userdata);
/* Stops a running request; the done callback is not called. */
void http_request_cancel(HttpRequest *req);

long http_request_status(const HttpRequest *req);
const char *http_request_body(const HttpRequest *req, size_t *ret_len);
/* Response header of the final answer, case-insensitive; value without surrounding spaces. */
const char *http_request_header(const HttpRequest *req, const char *name);
unsigned http_request_attempts(const HttpRequest *req);
bool http_request_running(const HttpRequest *req);

/* Percent-encodes s (uppercase hex); unreserved characters (A-Z a-z 0-9 - . _ ~) and those in
 * also_safe (may be NULL, e.g. "/" for object keys) stay as they are. */
int http_url_escape(const char *s, const char *also_safe, char **ret);

/* The single place where CURLcode and HTTP status become errno. */
int http_error_from_curl(CURLcode code);
int http_error_from_status(long status);
bool http_error_retryable(int error);
/* Back-off before attempt n (n ≥ 2) with jitter in [d/2, d]; random in [0,1). */
usec_t http_backoff(unsigned attempt, usec_t base, usec_t max, double random);

/* Called by the glue for every finished transfer. */
void http_on_curl_finished(CurlGlue *g, CURL *curl, CURLcode result);
