/* SPDX-License-Identifier: MIT */
#pragma once

/* A tiny in-process HTTP server on a free loopback port for the unit tests that drive the real
 * event loop, curl and http.c against it. The test supplies what is done with one connection. */

#include "unit-helpers.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* serve(fd): answers the requests of one connection, then closes fd. */
typedef void (*HttpTestServe)(int fd);

typedef struct HttpTestServer {
        int listen_fd;
        HttpTestServe serve;
        bool threaded;
} HttpTestServer;

typedef struct HttpTestConnection {
        HttpTestServe serve;
        int fd;
} HttpTestConnection;

static inline void *http_test_connection_main(void *arg) {
        HttpTestConnection c = *(HttpTestConnection *) arg;

        free(arg);
        c.serve(c.fd);
        return NULL;
}

static inline void *http_test_accept_main(void *arg) {
        const HttpTestServer *s = arg;

        for (;;) {
                int fd = accept(s->listen_fd, NULL, NULL);
                HttpTestConnection *c;
                pthread_t t;

                if (fd < 0)
                        return NULL;
                if (!s->threaded) {
                        s->serve(fd);
                        continue;
                }
                c = malloc(sizeof(*c));
                if (c)
                        *c = (HttpTestConnection) { .serve = s->serve, .fd = fd };
                if (c && pthread_create(&t, NULL, http_test_connection_main, c) == 0)
                        pthread_detach(t);
                else {
                        free(c);
                        close(fd);
                }
        }
}

/* Listens on 127.0.0.1 (a free port, returned) and accepts in a detached thread, which hands each
 * connection to serve: in a detached thread of its own when threaded, else one after the other.
 * Also initializes curl globally. Fails the test on any error. */
static inline int http_test_server_start(HttpTestServe serve, bool threaded) {
        static HttpTestServer server;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t l = sizeof(a);
        pthread_t t;

        server = (HttpTestServer) { .serve = serve, .threaded = threaded };
        server.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(server.listen_fd >= 0);
        assert_int_equal(bind(server.listen_fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(listen(server.listen_fd, 16), 0);
        assert_int_equal(getsockname(server.listen_fd, (struct sockaddr *) &a, &l), 0);
        assert_int_equal(pthread_create(&t, NULL, http_test_accept_main, &server), 0);
        assert_int_equal(pthread_detach(t), 0);
        assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        return ntohs(a.sin_port);
}

/* Writes all of s (len bytes) to fd; gives up silently when the peer is gone. */
static inline void http_test_send(int fd, const char *s, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, s, len);

                if (n <= 0)
                        return;
                s += n, len -= (size_t) n;
        }
}

/* Reads from fd into buf (size bytes, NUL-terminated) until it holds a request's whole head;
 * *ret_len is how much was read (the head and the start of the body). Returns where the
 * "\r\n\r\n" that ends the head is in buf; NULL at EOF, on an error or a head that does not fit. */
static inline char *http_test_read_head(int fd, char *buf, size_t size, size_t *ret_len) {
        size_t len = 0;
        char *end;

        for (;;) {
                ssize_t n = read(fd, buf + len, size - 1 - len);

                if (n <= 0)
                        return NULL;
                len += (size_t) n;
                buf[len] = 0;
                if ((end = strstr(buf, "\r\n\r\n"))) {
                        *ret_len = len;
                        return end;
                }
                if (len >= size - 1)
                        return NULL;
        }
}
