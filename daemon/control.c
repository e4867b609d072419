/* SPDX-License-Identifier: MIT */
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control.h"
#include "log.h"
#include "time-util.h"

struct ControlClient {
        ControlServer *server;
        int fd;
        sd_event_source *io;
        sd_event_source *idle;
        struct ucred peer;
        ControlBuffer in;
        char *out;
        size_t out_len;
        bool closing; /* close once the output is flushed */
        ControlTicket *ticket; /* a deferred answer is outstanding */
};

struct ControlTicket {
        ControlClient *client; /* NULL once the client went away */
};

struct ControlServer {
        sd_event *event;
        char *path;
        int fd;
        sd_event_source *io;
        ControlClient *clients[CONTROL_MAX_CLIENTS];
        ControlHandler handler;
        void *userdata;
};

static void control_client_free(ControlClient *c) {
        ControlServer *s;

        if (!c)
                return;
        if (c->ticket)
                c->ticket->client = NULL;
        s = c->server;
        for (size_t i = 0; s && i < ELEMENTSOF(s->clients); i++)
                if (s->clients[i] == c)
                        s->clients[i] = NULL;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->idle);
        safe_close(c->fd);
        control_buffer_done(&c->in);
        free(c->out);
        free(c);
}

ControlServer *control_server_free(ControlServer *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(s->clients); i++)
                control_client_free(s->clients[i]);
        sd_event_source_disable_unref(s->io);
        if (s->fd >= 0 && s->path)
                (void) unlink(s->path);
        safe_close(s->fd);
        sd_event_unref(s->event);
        free(s->path);
        return mfree(s);
}

unsigned control_server_n_clients(const ControlServer *s) {
        unsigned n = 0;

        for (size_t i = 0; i < ELEMENTSOF(s->clients); i++)
                n += !!s->clients[i];
        return n;
}

const struct ucred *control_client_peer(const ControlClient *c) {
        return &c->peer;
}

bool control_client_privileged(const ControlClient *c) {
        return c->peer.uid == 0;
}

static int control_client_update_events(ControlClient *c) {
        uint32_t events = c->out_len > 0 ? EPOLLOUT : 0;

        if (!c->closing)
                events |= EPOLLIN;
        return sd_event_source_set_io_events(c->io, events);
}

static int control_client_queue(ControlClient *c, char *msg, size_t len) {
        char *n;

        if (c->out_len + len > CONTROL_OUTPUT_MAX) {
                /* A client that sends requests but never reads its answers. */
                free(msg);
                c->closing = true;
                return -ENOBUFS;
        }
        n = realloc(c->out, c->out_len + len);
        if (!n) {
                free(msg);
                return -ENOMEM;
        }
        memcpy(n + c->out_len, msg, len);
        c->out = n;
        c->out_len += len;
        free(msg);
        return control_client_update_events(c);
}

int control_client_reply(ControlClient *c, const cJSON *parameters) {
        char *msg;
        size_t len;
        int r;

        r = control_reply_format(parameters, NULL, NULL, &msg, &len);
        if (r < 0)
                return control_client_error(c, CONTROL_ERROR_FAILED, "reply too large or out of memory");
        return control_client_queue(c, msg, len);
}

int control_client_error(ControlClient *c, const char *error, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        char *msg;
        size_t len;
        va_list ap;
        int r;

        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        if (r < 0)
                message = NULL;
        r = control_reply_format(NULL, error, message, &msg, &len);
        if (r < 0)
                return r;
        return control_client_queue(c, msg, len);
}

ControlTicket *control_client_defer(ControlClient *c) {
        ControlTicket *t;

        if (c->ticket)
                return NULL;
        t = calloc(1, sizeof(ControlTicket));
        if (!t)
                return NULL;
        t->client = c;
        c->ticket = t;
        (void) sd_event_source_set_enabled(c->idle, SD_EVENT_OFF);
        return t;
}

/* The client again behaves as one without a pending answer. */
static ControlClient *control_ticket_detach(ControlTicket *t) {
        ControlClient *c = t->client;

        free(t);
        if (!c)
                return NULL;
        c->ticket = NULL;
        (void) sd_event_source_set_time_relative(c->idle, CONTROL_IDLE_TIMEOUT_USEC);
        (void) sd_event_source_set_enabled(c->idle, SD_EVENT_ONESHOT);
        return c;
}

bool control_ticket_connected(const ControlTicket *t) {
        return t && t->client;
}

int control_ticket_reply(ControlTicket *t, const cJSON *parameters) {
        ControlClient *c;

        if (!t)
                return -EINVAL;
        c = control_ticket_detach(t);
        return c ? control_client_reply(c, parameters) : -ENOTCONN;
}

int control_ticket_error(ControlTicket *t, const char *error, const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        ControlClient *c;
        va_list ap;
        int r;

        if (!t)
                return -EINVAL;
        c = control_ticket_detach(t);
        if (!c)
                return -ENOTCONN;
        va_start(ap, format);
        r = vasprintf(&message, format, ap);
        va_end(ap);
        return control_client_error(c, error, "%s", r < 0 ? "out of memory" : message);
}

void control_ticket_free(ControlTicket *t) {
        ControlClient *c;

        if (!t)
                return;
        c = control_ticket_detach(t);
        if (!c)
                return;
        if (c->out_len == 0) {
                control_client_free(c);
                return;
        }
        c->closing = true;
        (void) control_client_update_events(c);
}

static void control_client_dispatch(ControlClient *c, const char *msg) {
        _cleanup_(cJSON_Deletep) cJSON *params = NULL;
        _cleanup_free_ char *method = NULL;

        if (control_request_parse(msg, &method, &params) < 0) {
                (void) control_client_error(c, CONTROL_ERROR_INVALID_REQUEST, "request is not a valid message");
                c->closing = true;
                return;
        }
        c->server->handler(c, method, params, c->server->userdata);
}

static int control_client_read(ControlClient *c) {
        char buf[4096];
        ssize_t n;
        int r;

        n = read(c->fd, buf, sizeof(buf));
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0) {
                /* The peer is done sending: answer what it asked, then close. */
                c->closing = true;
                if (c->out_len == 0 && !c->ticket)
                        return -ECONNRESET;
                return control_client_update_events(c);
        }
        r = control_buffer_feed(&c->in, buf, (size_t) n);
        if (r == -EMSGSIZE) {
                (void) control_client_error(c, CONTROL_ERROR_INVALID_REQUEST, "message larger than %u bytes",
                                            CONTROL_MESSAGE_MAX);
                c->closing = true;
                return control_client_update_events(c);
        }
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_free_ char *msg = NULL;

                if (c->closing)
                        break;
                r = control_buffer_next(&c->in, &msg);
                if (r <= 0)
                        return r;
                control_client_dispatch(c, msg);
        }
        return control_client_update_events(c);
}

static int control_client_write(ControlClient *c) {
        ssize_t n;

        n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        memmove(c->out, c->out + n, c->out_len - (size_t) n);
        c->out_len -= (size_t) n;
        if (c->out_len == 0 && c->closing && !c->ticket)
                return -ECONNRESET;
        return control_client_update_events(c);
}

static int control_client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ControlClient *c = userdata;
        int r = 0;

        (void) sd_event_source_set_time_relative(c->idle, CONTROL_IDLE_TIMEOUT_USEC);
        if (revents & EPOLLIN)
                r = control_client_read(c);
        if (r >= 0 && (revents & EPOLLOUT))
                r = control_client_write(c);
        if (r >= 0 && (revents & EPOLLERR))
                r = -ECONNRESET;
        if (r >= 0 && (revents & EPOLLHUP) && !(revents & EPOLLIN) && c->out_len == 0)
                r = -ECONNRESET;
        if (r >= 0 && c->ticket && c->closing && c->out_len == 0)
                /* Half-closed while waiting for a deferred answer: stop polling for input (a
                 * half-closed socket stays readable) until the answer is queued. */
                r = sd_event_source_set_io_events(c->io, 0);
        if (r < 0) {
                if (r != -ECONNRESET)
                        log_debug_errno(r, "Control client failed: %m");
                control_client_free(c);
        }
        return 0;
}

static int control_client_on_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        ControlClient *c = userdata;

        log_debug("Control client (pid %d) idle for too long, disconnecting", (int) c->peer.pid);
        control_client_free(c);
        return 0;
}

static int control_client_new(ControlServer *s, int fd, size_t slot) {
        ControlClient *c;
        socklen_t sl = sizeof(struct ucred);
        int r;

        c = calloc(1, sizeof(ControlClient));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        *c = (ControlClient) { .server = s, .fd = fd };
        s->clients[slot] = c;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &sl) < 0) {
                r = -errno;
                control_client_free(c);
                return r;
        }
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN, control_client_on_io, c);
        if (r >= 0)
                r = sd_event_add_time_relative(s->event, &c->idle, CLOCK_MONOTONIC, CONTROL_IDLE_TIMEOUT_USEC, 0,
                                               control_client_on_idle, c);
        if (r < 0) {
                control_client_free(c);
                return r;
        }
        (void) sd_event_source_set_description(c->io, "control-client");
        return 0;
}

static int control_server_on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        ControlServer *s = userdata;
        static const char busy[] = "{\"version\":1,\"error\":\"" CONTROL_ERROR_TOO_MANY_CLIENTS
                                   "\",\"message\":\"too many clients, try again\"}";
        int cfd;

        cfd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_debug_errno(-errno, "accept() on control socket failed: %m");
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(s->clients); i++)
                if (!s->clients[i]) {
                        int r = control_client_new(s, cfd, i);
                        if (r < 0)
                                log_debug_errno(r, "Cannot set up control client: %m");
                        return 0;
                }
        (void) !send(cfd, busy, sizeof(busy), MSG_NOSIGNAL | MSG_DONTWAIT);
        safe_close(cfd);
        return 0;
}

static int sockaddr_un_set(struct sockaddr_un *sa, const char *path) {
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        strcpy(sa->sun_path, path);
        return 0;
}

int control_check_stale(const char *path) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa;
        struct stat st;
        int r;

        r = sockaddr_un_set(&sa, path);
        if (r < 0)
                return r;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                return -EADDRINUSE;
        if (errno != ECONNREFUSED)
                return -errno;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static void control_socket_set_owner(const char *path) {
        struct group *g = getgrnam("trainsupd");

        if (g && chown(path, 0, g->gr_gid) < 0)
                log_warning_errno(-errno, "Cannot give %s to group trainsupd, ignoring: %m", path);
}

static int control_server_bind(ControlServer *s) {
        struct sockaddr_un sa;
        mode_t old;
        int r;

        r = sockaddr_un_set(&sa, s->path);
        if (r < 0)
                return r;
        r = control_check_stale(s->path);
        if (r < 0)
                return r;
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->fd < 0)
                return -errno;
        old = umask(0117);
        r = bind(s->fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0) {
                r = -errno;
                s->fd = safe_close(s->fd);
                return r;
        }
        if (chmod(s->path, 0660) < 0 || listen(s->fd, CONTROL_MAX_CLIENTS) < 0)
                return -errno;
        control_socket_set_owner(s->path);
        return 0;
}

int control_server_new(ControlServer **ret, sd_event *event, const char *path, ControlHandler handler,
                       void *userdata) {
        _cleanup_(control_server_freep) ControlServer *s = NULL;
        int r;

        s = calloc(1, sizeof(ControlServer));
        if (!s)
                return -ENOMEM;
        *s = (ControlServer) { .event = sd_event_ref(event), .fd = -EBADF, .handler = handler,
                               .userdata = userdata };
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;
        r = control_server_bind(s);
        if (r < 0)
                return r;
        r = sd_event_add_io(event, &s->io, s->fd, EPOLLIN, control_server_on_accept, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->io, "control-listen");
        *ret = TAKE_PTR(s);
        return 0;
}
