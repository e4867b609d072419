/* SPDX-License-Identifier: MIT */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "macro.h"

/* libcurl's multi interface driven by sd-event: one io source per socket, one timer, and a
 * defer source that drains finished transfers in a later loop iteration. */
typedef struct CurlGlue CurlGlue;

/* Called once per finished easy handle, after it was removed from the multi handle. */
typedef void (*CurlGlueFinished)(CurlGlue *g, CURL *curl, CURLcode result);

int curl_glue_new(CurlGlue **ret, sd_event *event, CurlGlueFinished on_finished);
CurlGlue *curl_glue_free(CurlGlue *g);
DEFINE_CLEANUP_FUNC(CurlGlue *, curl_glue_free);

sd_event *curl_glue_get_event(CurlGlue *g);

/* A new easy handle with the daemon's defaults (no signals, protocols http/https only, TLS
 * verification on, low-speed abort). */
int curl_glue_make(CURL **ret, const char *url, void *userdata);

int curl_glue_add(CurlGlue *g, CURL *c);
void curl_glue_remove(CurlGlue *g, CURL *c);
