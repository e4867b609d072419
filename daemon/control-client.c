/* SPDX-License-Identifier: MIT */
#include <sys/socket.h>
#include <sys/un.h>

#include "control-client.h"
#include "control-proto.h"
#include "macro.h"

static int control_connect(const char *path, usec_t timeout, int *ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = (time_t) (timeout / USEC_PER_SEC),
                              .tv_usec = (suseconds_t) (timeout % USEC_PER_SEC) };

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        *ret = TAKE_FD(fd);
        return 0;
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int receive_message(int fd, char **ret) {
        _cleanup_(control_buffer_done) ControlBuffer b = {};
        char buf[4096];
        int r;

        for (;;) {
                ssize_t k = read(fd, buf, sizeof(buf));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? -ETIMEDOUT : -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                r = control_buffer_feed(&b, buf, (size_t) k);
                if (r < 0)
                        return r;
                r = control_buffer_next(&b, ret);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
}

int control_call(const char *path, const char *method, const cJSON *parameters, usec_t timeout,
                 cJSON **ret_parameters, char **ret_error, char **ret_message) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *req = NULL, *reply = NULL, *error = NULL, *message = NULL;
        cJSON *params = NULL;
        size_t len;
        int r;

        r = control_request_format(method, parameters, &req, &len);
        if (r < 0)
                return r;
        r = control_connect(path, timeout, &fd);
        if (r < 0)
                return r;
        r = send_all(fd, req, len);
        /* A daemon that turns us away (too many clients) answers and closes before reading:
         * its answer is still worth reading. */
        if (r < 0 && r != -EPIPE && r != -ECONNRESET)
                return r;
        r = receive_message(fd, &reply);
        if (r < 0)
                return r;
        r = control_reply_parse(reply, &params, &error, &message);
        if (r < 0)
                return r;
        if (error) {
                *ret_error = TAKE_PTR(error);
                *ret_message = TAKE_PTR(message);
                return -EREMOTEIO;
        }
        *ret_parameters = params;
        return 0;
}
