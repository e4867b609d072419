/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/random.h>

#include "http.h"
#include "log.h"
#include "strv.h"

struct HttpRequest {
        CurlGlue *glue;
        CURL *curl;
        char *method;
        struct curl_slist *headers;
        char *body;
        size_t body_len;
        int body_fd;            /* < 0: body is in memory */
        uint64_t body_offset;
        uint64_t body_fd_len;
        uint64_t body_sent;     /* of the current attempt */

        size_t max_response;
        usec_t connect_timeout;
        usec_t total_timeout;
        usec_t deadline;
        unsigned max_attempts;
        usec_t backoff_base;
        usec_t backoff_max;
        long accept_status[4];
        size_t n_accept_status;

        HttpRequestDone done;
        void *userdata;
        bool sigv4;
        HttpStreamFunc stream;
        void *stream_userdata;
        int stream_error;
        sd_event_source *retry_timer;
        unsigned attempt;
        bool running;
        bool in_multi;
        bool started_once;

        /* the answer of the current attempt */
        long status;
        char *response;
        size_t response_len;
        bool response_too_large;
        char **response_headers;
};

DEFINE_CLEANUP_FUNC(CURL *, curl_easy_cleanup);

int http_error_from_curl(CURLcode code) {
        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        case CURLE_PARTIAL_FILE:
                return -EPIPE;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_ABORTED_BY_CALLBACK:
                return -ECANCELED;
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EPROTONOSUPPORT;
        case CURLE_URL_MALFORMAT:
                return -EINVAL;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
                return -EKEYREJECTED;
        case CURLE_SSL_CONNECT_ERROR:
                return -ECONNABORTED;
        case CURLE_WEIRD_SERVER_REPLY:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

int http_error_from_status(long status) {
        if (status >= 200 && status < 300)
                return 0;
        switch (status) {
        case 400:
                return -EINVAL;
        case 401:
        case 403:
                return -EACCES;
        case 404:
                return -ENOENT;
        case 405:
                return -EOPNOTSUPP;
        case 408:
                return -ETIMEDOUT;
        case 409:
                return -EBUSY;
        case 412:
                return -EEXIST;
        case 413:
                return -EFBIG;
        case 416:
                return -ERANGE;
        case 429:
                return -EAGAIN;
        default:
                break;
        }
        if (status >= 500 && status < 600)
                return -EIO;
        return -EPROTO; /* 1xx/3xx we did not follow, other 4xx */
}

int http_url_escape(const char *s, const char *also_safe, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        char *e, *p;

        e = malloc(strlen(s) * 3 + 1);
        if (!e)
                return -ENOMEM;
        p = e;
        for (; *s; s++) {
                unsigned char u = (unsigned char) *s;

                if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') ||
                    strchr("-._~", u) || (also_safe && strchr(also_safe, u)))
                        *p++ = *s;
                else {
                        *p++ = '%';
                        *p++ = hex[u >> 4];
                        *p++ = hex[u & 15];
                }
        }
        *p = 0;
        *ret = e;
        return 0;
}

bool http_error_retryable(int error) {
        switch (error) {
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -ECONNRESET:
        case -ECONNABORTED:
        case -EHOSTUNREACH:
        case -EPIPE:
        case -EIO:
        case -EAGAIN:
                return true;
        default:
                return false;
        }
}

usec_t http_backoff(unsigned attempt, usec_t base, usec_t max, double random) {
        usec_t d = base;

        for (unsigned i = 2; i < attempt && d < max; i++)
                d *= 2;
        d = MIN(d, max);
        return d / 2 + (usec_t) ((double) (d - d / 2) * random);
}

static double random_unit(void) {
        uint32_t x;

        if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x))
                x = (uint32_t) now_usec(CLOCK_MONOTONIC);
        return (double) x / 4294967296.0;
}

static void http_request_reset_answer(HttpRequest *req) {
        req->status = 0;
        req->stream_error = 0;
        req->response = mfree(req->response);
        req->response_len = 0;
        req->response_too_large = false;
        req->response_headers = strv_free(req->response_headers);
}

static void http_request_detach(HttpRequest *req) {
        if (req->in_multi) {
                curl_glue_remove(req->glue, req->curl);
                req->in_multi = false;
        }
        req->retry_timer = sd_event_source_disable_unref(req->retry_timer);
        req->running = false;
}

HttpRequest *http_request_free(HttpRequest *req) {
        if (!req)
                return NULL;
        http_request_detach(req);
        http_request_reset_answer(req);
        if (req->curl)
                curl_easy_cleanup(req->curl);
        curl_slist_free_all(req->headers);
        free(req->method);
        free(req->body);
        return mfree(req);
}

static bool http_request_streaming_now(HttpRequest *req) {
        long status = 0;

        if (!req->stream)
                return false;
        (void) curl_easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, &status);
        return status >= 200 && status < 300;
}

static size_t http_on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
        HttpRequest *req = userdata;
        size_t n = size * nmemb;
        char *c;

        if (http_request_streaming_now(req)) {
                int r = req->stream(req, ptr, n, req->stream_userdata);

                if (r < 0) {
                        req->stream_error = r;
                        return 0; /* aborts the transfer */
                }
                return n;
        }

        if (req->response_len + n > req->max_response) {
                req->response_too_large = true;
                return 0; /* aborts the transfer */
        }
        c = realloc(req->response, req->response_len + n + 1);
        if (!c)
                return 0;
        memcpy(c + req->response_len, ptr, n);
        req->response_len += n;
        c[req->response_len] = 0;
        req->response = c;
        return n;
}

static size_t http_on_header(char *ptr, size_t size, size_t nitems, void *userdata) {
        HttpRequest *req = userdata;
        size_t n = size * nitems, len = n;

        /* A new status line (after 100 Continue or a redirect) starts a new header set. */
        if (n >= 5 && strneq(ptr, "HTTP/", 5)) {
                req->response_headers = strv_free(req->response_headers);
                return n;
        }
        while (len > 0 && (ptr[len - 1] == '\n' || ptr[len - 1] == '\r'))
                len--;
        if (len == 0 || strv_length(req->response_headers) >= 256)
                return n;
        if (strv_consume(&req->response_headers, strndup(ptr, len)) < 0)
                return 0;
        return n;
}

int http_request_new(HttpRequest **ret, CurlGlue *glue, const char *method, const char *url) {
        _cleanup_(http_request_freep) HttpRequest *req = NULL;
        int r;

        req = calloc(1, sizeof(HttpRequest));
        if (!req)
                return -ENOMEM;
        *req = (HttpRequest) {
                .glue = glue,
                .max_response = HTTP_DEFAULT_MAX_RESPONSE,
                .connect_timeout = HTTP_DEFAULT_CONNECT_TIMEOUT_USEC,
                .total_timeout = HTTP_DEFAULT_TOTAL_TIMEOUT_USEC,
                .deadline = USEC_INFINITY,
                .max_attempts = 1,
                .body_fd = -EBADF,
                .backoff_base = 200 * USEC_PER_MSEC,
                .backoff_max = 10 * USEC_PER_SEC,
        };
        req->method = strdup(method);
        if (!req->method)
                return -ENOMEM;
        r = curl_glue_make(&req->curl, url, req);
        if (r < 0)
                return r;
        if (curl_easy_setopt(req->curl, CURLOPT_WRITEFUNCTION, http_on_write) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_WRITEDATA, req) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_HEADERFUNCTION, http_on_header) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_HEADERDATA, req) != CURLE_OK)
                return -EIO;
        *ret = TAKE_PTR(req);
        return 0;
}

int http_request_add_header(HttpRequest *req, const char *format, ...) {
        _cleanup_free_ char *h = NULL;
        struct curl_slist *l;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&h, format, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;
        l = curl_slist_append(req->headers, h);
        if (!l)
                return -ENOMEM;
        req->headers = l;
        return 0;
}

int http_request_set_body(HttpRequest *req, const void *data, size_t len) {
        char *b = malloc(len + 1);

        if (!b)
                return -ENOMEM;
        if (len > 0)
                memcpy(b, data, len);
        b[len] = 0;
        free(req->body);
        req->body = b;
        req->body_len = len;
        return 0;
}

void http_request_set_body_fd(HttpRequest *req, int fd, uint64_t offset, uint64_t len) {
        req->body_fd = fd;
        req->body_offset = offset;
        req->body_fd_len = len;
}

static size_t http_on_read(char *buf, size_t size, size_t nitems, void *userdata) {
        HttpRequest *req = userdata;
        uint64_t left = req->body_fd_len - req->body_sent;
        size_t want = (size_t) MIN((uint64_t) size * nitems, left);
        ssize_t n;

        if (want == 0)
                return 0;
        do
                n = pread(req->body_fd, buf, want, (off_t) (req->body_offset + req->body_sent));
        while (n < 0 && errno == EINTR);
        if (n <= 0)
                return CURL_READFUNC_ABORT; /* the file shrank or cannot be read: never send a short body */
        req->body_sent += (uint64_t) n;
        return (size_t) n;
}

void http_request_set_max_response(HttpRequest *req, size_t max) {
        req->max_response = max;
}

void http_request_set_timeouts(HttpRequest *req, usec_t connect, usec_t total) {
        req->connect_timeout = connect;
        req->total_timeout = total;
}

void http_request_set_retry(HttpRequest *req, unsigned attempts, usec_t base, usec_t max) {
        req->max_attempts = MAX(attempts, 1U);
        req->backoff_base = base;
        req->backoff_max = MAX(max, base);
}

void http_request_set_deadline(HttpRequest *req, usec_t deadline) {
        req->deadline = deadline;
}

int http_request_set_unix_socket(HttpRequest *req, const char *path) {
        return curl_easy_setopt(req->curl, CURLOPT_UNIX_SOCKET_PATH, path) == CURLE_OK ? 0 : -EIO;
}

void http_request_set_no_proxy(HttpRequest *req, bool b) {
        (void) curl_easy_setopt(req->curl, CURLOPT_PROXY, b ? "" : NULL);
}

int http_request_set_ca_file(HttpRequest *req, const char *path) {
        return curl_easy_setopt(req->curl, CURLOPT_CAINFO, path) == CURLE_OK ? 0 : -EIO;
}

void http_request_set_accept_status(HttpRequest *req, long status) {
        if (req->n_accept_status < ELEMENTSOF(req->accept_status))
                req->accept_status[req->n_accept_status++] = status;
}

void http_request_set_stream(HttpRequest *req, HttpStreamFunc fn, void *userdata) {
        req->stream = fn;
        req->stream_userdata = userdata;
}

int http_request_set_aws_sigv4(HttpRequest *req, const char *provider, const char *key_id, const char *secret) {
        if (curl_easy_setopt(req->curl, CURLOPT_AWS_SIGV4, provider) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_USERNAME, key_id) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_PASSWORD, secret) != CURLE_OK)
                return -EIO;
        req->sigv4 = true;
        return 0;
}

CURL *http_request_get_curl(HttpRequest *req) {
        return req->curl;
}

static int http_request_setup_method(HttpRequest *req) {
        CURL *c = req->curl;

        if (req->body_fd >= 0) {
                if (curl_easy_setopt(c, CURLOPT_UPLOAD, 1L) != CURLE_OK ||
                    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK ||
                    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->body_fd_len) != CURLE_OK ||
                    curl_easy_setopt(c, CURLOPT_READFUNCTION, http_on_read) != CURLE_OK ||
                    curl_easy_setopt(c, CURLOPT_READDATA, req) != CURLE_OK)
                        return -EIO;
                return 0;
        }
        if (streq(req->method, "GET"))
                return curl_easy_setopt(c, CURLOPT_HTTPGET, 1L) == CURLE_OK ? 0 : -EIO;
        if (streq(req->method, "HEAD"))
                return curl_easy_setopt(c, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -EIO;
        if (curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ?: "") != CURLE_OK)
                return -EIO;
        return 0;
}

static int http_request_attempt(HttpRequest *req) {
        usec_t now = now_usec(CLOCK_BOOTTIME), total = req->total_timeout;
        int r;

        if (req->deadline != USEC_INFINITY) {
                if (now >= req->deadline)
                        return -ETIMEDOUT;
                total = MIN(total, req->deadline - now);
        }
        http_request_reset_answer(req);
        req->attempt++;
        req->body_sent = 0;
        if (curl_easy_setopt(req->curl, CURLOPT_CONNECTTIMEOUT_MS,
                             (long) MAX(req->connect_timeout / USEC_PER_MSEC, 1)) != CURLE_OK ||
            curl_easy_setopt(req->curl, CURLOPT_TIMEOUT_MS,
                             total == USEC_INFINITY ? 0L : (long) MAX(total / USEC_PER_MSEC, 1)) != CURLE_OK)
                return -EIO;
        r = curl_glue_add(req->glue, req->curl);
        if (r < 0)
                return r;
        req->in_multi = true;
        return 0;
}

int http_request_start(HttpRequest *req, HttpRequestDone done, void *userdata) {
        int r;

        if (req->running)
                return -EBUSY;
        if (!req->started_once && !req->sigv4) {
                /* "Expect:" stops curl from waiting for 100-continue on larger bodies. */
                r = http_request_add_header(req, "Expect:");
                if (r < 0)
                        return r;
                req->started_once = true;
        }
        if (curl_easy_setopt(req->curl, CURLOPT_HTTPHEADER, req->headers) != CURLE_OK)
                return -EIO;
        r = http_request_setup_method(req);
        if (r < 0)
                return r;
        req->done = done;
        req->userdata = userdata;
        req->attempt = 0;
        r = http_request_attempt(req);
        if (r < 0)
                return r;
        req->running = true;
        return 0;
}

void http_request_cancel(HttpRequest *req) {
        if (req)
                http_request_detach(req);
}

static void http_request_finish(HttpRequest *req, int error) {
        http_request_detach(req);
        if (req->done)
                req->done(req, error, req->userdata);
}

static int http_on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpRequest *req = userdata;
        int r;

        req->retry_timer = sd_event_source_disable_unref(req->retry_timer);
        r = http_request_attempt(req);
        if (r < 0)
                http_request_finish(req, r);
        return 0;
}

static usec_t http_retry_after(const HttpRequest *req) {
        const char *v = http_request_header(req, "Retry-After");
        char *end;
        unsigned long s;

        if (!v)
                return 0;
        errno = 0;
        s = strtoul(v, &end, 10);
        if (errno != 0 || end == v || *end)
                return 0;
        return (usec_t) MIN(s, 3600UL) * USEC_PER_SEC;
}

static bool http_request_schedule_retry(HttpRequest *req, int error) {
        usec_t delay, now;

        if (!http_error_retryable(error) || req->attempt >= req->max_attempts)
                return false;
        delay = http_backoff(req->attempt + 1, req->backoff_base, req->backoff_max, random_unit());
        delay = MAX(delay, MIN(http_retry_after(req), req->backoff_max));
        now = now_usec(CLOCK_BOOTTIME);
        if (req->deadline != USEC_INFINITY && now + delay >= req->deadline)
                return false;
        if (sd_event_add_time_relative(curl_glue_get_event(req->glue), &req->retry_timer, CLOCK_BOOTTIME, delay, USEC_PER_MSEC,
                                       http_on_retry_timer, req) < 0)
                return false;
        (void) sd_event_source_set_description(req->retry_timer, "http-retry");
        log_debug("HTTP attempt %u failed (%s), retrying in %llu ms", req->attempt, strerror(-error),
                  (unsigned long long) (delay / USEC_PER_MSEC));
        return true;
}

static int http_request_result(HttpRequest *req, CURLcode result) {
        if (result != CURLE_OK) {
                if (req->stream_error < 0)
                        return req->stream_error;
                if (req->response_too_large)
                        return -EFBIG;
                return http_error_from_curl(result);
        }
        (void) curl_easy_getinfo(req->curl, CURLINFO_RESPONSE_CODE, &req->status);
        for (size_t i = 0; i < req->n_accept_status; i++)
                if (req->accept_status[i] == req->status)
                        return 0;
        return http_error_from_status(req->status);
}

void http_on_curl_finished(CurlGlue *g, CURL *curl, CURLcode result) {
        HttpRequest *req = NULL;
        int error;

        if (curl_easy_getinfo(curl, CURLINFO_PRIVATE, (char **) &req) != CURLE_OK || !req)
                return;
        req->in_multi = false;
        error = http_request_result(req, result);
        if (error < 0 && http_request_schedule_retry(req, error))
                return;
        http_request_finish(req, error);
}

long http_request_status(const HttpRequest *req) {
        return req->status;
}

const char *http_request_body(const HttpRequest *req, size_t *ret_len) {
        if (ret_len)
                *ret_len = req->response_len;
        return req->response ?: "";
}

const char *http_request_header(const HttpRequest *req, const char *name) {
        size_t n = strlen(name);

        STRV_FOREACH(h, req->response_headers) {
                if (strncasecmp(*h, name, n) != 0 || (*h)[n] != ':')
                        continue;
                const char *v = *h + n + 1;
                while (*v == ' ' || *v == '\t')
                        v++;
                return v;
        }
        return NULL;
}

unsigned http_request_attempts(const HttpRequest *req) {
        return req->attempt;
}

bool http_request_running(const HttpRequest *req) {
        return req->running;
}
