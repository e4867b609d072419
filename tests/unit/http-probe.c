/* SPDX-License-Identifier: MIT */
/* http-probe: runs one HttpRequest (daemon/http.h) on an sd-event loop through CurlGlue, the way
 * the daemon does, and prints one line
 *
 *     error=<errno name or 0> status=<N> attempts=<N> body_len=<N>
 *
 * followed, with --body, by the response body exactly as received. Used by
 * tests/integration/t-http.sh against tests/integration/http-test-server.py.
 *
 * Exit status: 0 when error=0, 1 when the request failed (the line is printed all the same),
 * 2 on usage errors or when the request could not be set up. */
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "http.h"

static const char *errno_name(int e) {
        static const struct {
                int e;
                const char *name;
        } table[] = {
                { EPERM, "EPERM" },
                { ENOENT, "ENOENT" },
                { EINTR, "EINTR" },
                { EIO, "EIO" },
                { EBADF, "EBADF" },
                { EAGAIN, "EAGAIN" },
                { ENOMEM, "ENOMEM" },
                { EACCES, "EACCES" },
                { EBUSY, "EBUSY" },
                { EEXIST, "EEXIST" },
                { EINVAL, "EINVAL" },
                { EFBIG, "EFBIG" },
                { EPIPE, "EPIPE" },
                { ERANGE, "ERANGE" },
                { EBADMSG, "EBADMSG" },
                { EPROTO, "EPROTO" },
                { EMSGSIZE, "EMSGSIZE" },
                { EPROTONOSUPPORT, "EPROTONOSUPPORT" },
                { EOPNOTSUPP, "EOPNOTSUPP" },
                { ECONNABORTED, "ECONNABORTED" },
                { ECONNRESET, "ECONNRESET" },
                { ENOBUFS, "ENOBUFS" },
                { ETIMEDOUT, "ETIMEDOUT" },
                { ECONNREFUSED, "ECONNREFUSED" },
                { EHOSTUNREACH, "EHOSTUNREACH" },
                { ENETUNREACH, "ENETUNREACH" },
                { ECANCELED, "ECANCELED" },
                { EKEYREJECTED, "EKEYREJECTED" },
                { EREMOTEIO, "EREMOTEIO" },
        };
        static char buf[32];

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].e == e)
                        return table[i].name;
        snprintf(buf, sizeof(buf), "errno-%d", e);
        return buf;
}

static void usage(FILE *f) {
        fputs("Usage: http-probe [OPTIONS] URL\n"
              "  --method M               request method (default GET, or POST with --data)\n"
              "  --header 'K: V'          request header (repeatable)\n"
              "  --data STRING            request body\n"
              "  --max-response BYTES     response body cap\n"
              "  --connect-timeout-ms N   connect timeout\n"
              "  --timeout-ms N           total timeout of one attempt\n"
              "  --retries N              attempts in all (1 = no retry)\n"
              "  --backoff-ms N           back-off base between attempts\n"
              "  --backoff-max-ms N       back-off cap (default 10000)\n"
              "  --deadline-ms N          deadline, relative to the start\n"
              "  --unix-socket PATH       talk HTTP over a unix socket\n"
              "  --accept-status N        a non-2xx status that counts as success (repeatable)\n"
              "  --body                   print the response body after the result line\n"
              "  --header-out NAME        print a response header as NAME=<value> after the result line\n",
              f);
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || *end)
                return -EINVAL;
        *ret = (uint64_t) v;
        return 0;
}

typedef struct Result {
        bool done;
        int error;
} Result;

static void on_done(HttpRequest *req, int error, void *userdata) {
        Result *res = userdata;

        res->done = true;
        res->error = error;
}

enum {
        OPT_METHOD = 0x100,
        OPT_HEADER,
        OPT_DATA,
        OPT_MAX_RESPONSE,
        OPT_CONNECT_TIMEOUT,
        OPT_TIMEOUT,
        OPT_RETRIES,
        OPT_BACKOFF,
        OPT_BACKOFF_MAX,
        OPT_DEADLINE,
        OPT_UNIX_SOCKET,
        OPT_ACCEPT_STATUS,
        OPT_BODY,
        OPT_HEADER_OUT,
        OPT_HELP,
};

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "method", required_argument, NULL, OPT_METHOD },
                { "header", required_argument, NULL, OPT_HEADER },
                { "data", required_argument, NULL, OPT_DATA },
                { "max-response", required_argument, NULL, OPT_MAX_RESPONSE },
                { "connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT },
                { "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
                { "retries", required_argument, NULL, OPT_RETRIES },
                { "backoff-ms", required_argument, NULL, OPT_BACKOFF },
                { "backoff-max-ms", required_argument, NULL, OPT_BACKOFF_MAX },
                { "deadline-ms", required_argument, NULL, OPT_DEADLINE },
                { "unix-socket", required_argument, NULL, OPT_UNIX_SOCKET },
                { "accept-status", required_argument, NULL, OPT_ACCEPT_STATUS },
                { "body", no_argument, NULL, OPT_BODY },
                { "header-out", required_argument, NULL, OPT_HEADER_OUT },
                { "help", no_argument, NULL, OPT_HELP },
                {}
        };
        const char *method = NULL, *data = NULL, *unix_socket = NULL, *url, *header_out = NULL;
        const char *headers[64];
        long accept[4];
        size_t n_headers = 0, n_accept = 0;
        uint64_t max_response = HTTP_DEFAULT_MAX_RESPONSE;
        uint64_t connect_ms = HTTP_DEFAULT_CONNECT_TIMEOUT_USEC / USEC_PER_MSEC;
        uint64_t timeout_ms = HTTP_DEFAULT_TOTAL_TIMEOUT_USEC / USEC_PER_MSEC;
        uint64_t retries = 1, backoff_ms = 200, backoff_max_ms = 10000, deadline_ms = UINT64_MAX, v;
        bool print_body = false;
        sd_event *event = NULL;
        CurlGlue *glue = NULL;
        HttpRequest *req = NULL;
        Result res = {};
        const char *body;
        size_t body_len = 0;
        int c, r, ret = 2;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case OPT_METHOD: method = optarg; break;
                case OPT_HEADER:
                        if (n_headers >= ELEMENTSOF(headers)) {
                                fprintf(stderr, "http-probe: too many --header\n");
                                return 2;
                        }
                        headers[n_headers++] = optarg;
                        break;
                case OPT_DATA: data = optarg; break;
                case OPT_UNIX_SOCKET: unix_socket = optarg; break;
                case OPT_BODY: print_body = true; break;
                case OPT_HEADER_OUT: header_out = optarg; break;
                case OPT_HELP: usage(stdout); return 0;
                case OPT_MAX_RESPONSE:
                case OPT_CONNECT_TIMEOUT:
                case OPT_TIMEOUT:
                case OPT_RETRIES:
                case OPT_BACKOFF:
                case OPT_BACKOFF_MAX:
                case OPT_DEADLINE:
                case OPT_ACCEPT_STATUS:
                        if (parse_u64(optarg, &v) < 0 || v > UINT32_MAX) {
                                fprintf(stderr, "http-probe: invalid number \"%s\"\n", optarg);
                                return 2;
                        }
                        if (c == OPT_MAX_RESPONSE) max_response = v;
                        else if (c == OPT_CONNECT_TIMEOUT) connect_ms = v;
                        else if (c == OPT_TIMEOUT) timeout_ms = v;
                        else if (c == OPT_RETRIES) retries = v;
                        else if (c == OPT_BACKOFF) backoff_ms = v;
                        else if (c == OPT_BACKOFF_MAX) backoff_max_ms = v;
                        else if (c == OPT_DEADLINE) deadline_ms = v;
                        else {
                                if (n_accept >= ELEMENTSOF(accept)) {
                                        fprintf(stderr, "http-probe: too many --accept-status\n");
                                        return 2;
                                }
                                accept[n_accept++] = (long) v;
                        }
                        break;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        url = argv[optind];
        if (!method)
                method = data ? "POST" : "GET";

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fprintf(stderr, "http-probe: curl_global_init() failed\n");
                return 2;
        }
        r = sd_event_new(&event);
        if (r >= 0)
                r = curl_glue_new(&glue, event, http_on_curl_finished);
        if (r >= 0)
                r = http_request_new(&req, glue, method, url);
        if (r < 0) {
                fprintf(stderr, "http-probe: setting up failed: %s\n", strerror(-r));
                goto finish;
        }
        for (size_t i = 0; r >= 0 && i < n_headers; i++)
                r = http_request_add_header(req, "%s", headers[i]);
        if (r >= 0 && data)
                r = http_request_set_body(req, data, strlen(data));
        if (r >= 0 && unix_socket)
                r = http_request_set_unix_socket(req, unix_socket);
        if (r < 0) {
                fprintf(stderr, "http-probe: setting up the request failed: %s\n", strerror(-r));
                goto finish;
        }
        http_request_set_max_response(req, (size_t) max_response);
        http_request_set_timeouts(req, connect_ms * USEC_PER_MSEC, timeout_ms * USEC_PER_MSEC);
        http_request_set_retry(req, (unsigned) retries, backoff_ms * USEC_PER_MSEC, backoff_max_ms * USEC_PER_MSEC);
        if (deadline_ms != UINT64_MAX)
                http_request_set_deadline(req, now_usec(CLOCK_BOOTTIME) + deadline_ms * USEC_PER_MSEC);
        for (size_t i = 0; i < n_accept; i++)
                http_request_set_accept_status(req, accept[i]);

        r = http_request_start(req, on_done, &res);
        if (r < 0) {
                /* A request that cannot even start is still a result (e.g. past its deadline). */
                res = (Result) { .done = true, .error = r };
        }
        while (!res.done) {
                r = sd_event_run(event, UINT64_MAX);
                if (r < 0) {
                        fprintf(stderr, "http-probe: event loop failed: %s\n", strerror(-r));
                        goto finish;
                }
        }

        body = http_request_body(req, &body_len);
        printf("error=%s status=%ld attempts=%u body_len=%zu\n", res.error == 0 ? "0" : errno_name(-res.error),
               http_request_status(req), http_request_attempts(req), body_len);
        if (header_out) {
                const char *h = http_request_header(req, header_out);
                printf("%s=%s\n", header_out, h ?: "");
        }
        if (print_body)
                fwrite(body, 1, body_len, stdout);
        fflush(stdout);
        ret = res.error == 0 ? 0 : 1;

finish:
        http_request_free(req);
        curl_glue_free(glue);
        sd_event_unref(event);
        curl_global_cleanup();
        return ret;
}
