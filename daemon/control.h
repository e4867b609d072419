/* SPDX-License-Identifier: MIT */
#pragma once

#include <cjson/cJSON.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "control-proto.h"
#include "macro.h"

/* The daemon's control socket: a unix stream socket speaking control-proto, with limits on
 * message size, clients and idle time. Peers are identified by SO_PEERCRED. */

#define CONTROL_MAX_CLIENTS 16
#define CONTROL_IDLE_TIMEOUT_USEC (5 * USEC_PER_SEC)
#define CONTROL_OUTPUT_MAX (4U * CONTROL_MESSAGE_MAX)

typedef struct ControlServer ControlServer;
typedef struct ControlClient ControlClient;

/* Handles one request. Must answer with control_client_reply() or control_client_error()
 * before it returns — or take a ticket with control_client_defer() and answer through it later:
 * the client may go away (disconnect, idle timeout) once the handler has returned. */
typedef void (*ControlHandler)(ControlClient *c, const char *method, const cJSON *parameters, void *userdata);

int control_server_new(ControlServer **ret, sd_event *event, const char *path, ControlHandler handler,
                       void *userdata);
ControlServer *control_server_free(ControlServer *s);
DEFINE_CLEANUP_FUNC(ControlServer *, control_server_free);
unsigned control_server_n_clients(const ControlServer *s);

const struct ucred *control_client_peer(const ControlClient *c);
bool control_client_privileged(const ControlClient *c);
int control_client_reply(ControlClient *c, const cJSON *parameters);
int control_client_error(ControlClient *c, const char *error, const char *format, ...) _printf_(3, 4);

/* A reply given later (checkpoint --wait). While a ticket is outstanding the client's idle
 * timeout is suspended and its half-close does not end it. Answering frees the ticket; when the
 * client went away meanwhile the answer is dropped. control_ticket_free() drops it unanswered
 * (the client then gets no answer and is closed). One ticket per client at a time: NULL when
 * one is outstanding or on allocation failure. */
typedef struct ControlTicket ControlTicket;

ControlTicket *control_client_defer(ControlClient *c);
int control_ticket_reply(ControlTicket *t, const cJSON *parameters);
int control_ticket_error(ControlTicket *t, const char *error, const char *format, ...) _printf_(3, 4);
void control_ticket_free(ControlTicket *t);
/* False once the client has disconnected. */
bool control_ticket_connected(const ControlTicket *t);

/* Before binding: 0 when path is free (a stale socket nobody answers on is removed),
 * -EADDRINUSE when a daemon answers there, other -errno on failure. */
int control_check_stale(const char *path);
