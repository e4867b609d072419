/* SPDX-License-Identifier: MIT */
#include "storage.h"

#define STORE_AUTO_PART_SIZE (16ULL * 1024 * 1024)

void store_objects_free(StoreObject *objects, size_t n) {
        for (size_t i = 0; objects && i < n; i++)
                free(objects[i].key);
        free(objects);
}

static const StoreVTable *const store_backends[] = {
        &store_file_vtable,
        &store_s3_vtable,
        &store_gs_vtable,
        &store_az_vtable,
};

static const StoreVTable *store_backend_for(const char *url, const char **ret_location) {
        const char *sep = strstr(url, "://");

        if (!sep)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(store_backends); i++) {
                size_t n = strlen(store_backends[i]->scheme);

                if ((size_t) (sep - url) == n && strneq(url, store_backends[i]->scheme, n)) {
                        *ret_location = sep + 3;
                        return store_backends[i];
                }
        }
        return NULL;
}

int store_new(Store **ret, const StoreParams *p) {
        _cleanup_(store_freep) Store *s = NULL;
        const char *url = p->url ?: p->config->storage_url, *location = NULL;
        const StoreVTable *vt = store_backend_for(url, &location);
        int r;

        if (!vt || !vt->open)
                return -EPROTONOSUPPORT;
        s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;
        *s = (Store) {
                .event = sd_event_ref(p->event),
                .glue = p->glue,
                .worker = p->worker,
                .config = p->config,
                .vt = vt,
                .concurrency = MAX(p->config->storage_concurrency, 1U),
        };
        s->url = strdup(url);
        s->location = strdup(location);
        if (!s->url || !s->location)
                return -ENOMEM;
        r = vt->open(s, &s->data);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;
        if (s->data) {
                if (s->vt->cancel_all)
                        s->vt->cancel_all(s);
                s->vt->close(s->data);
        }
        free(s->url);
        free(s->location);
        sd_event_unref(s->event);
        return mfree(s);
}

uint64_t store_part_size(const Store *s, uint64_t size) {
        uint64_t part = s->config->storage_part_size_mb > 0 ? (uint64_t) s->config->storage_part_size_mb << 20
                                                              : STORE_AUTO_PART_SIZE;
        unsigned max_parts = MAX(s->vt->max_parts, 1U);

        if (part < s->vt->min_part_size)
                part = s->vt->min_part_size;
        /* Grow until the object fits in the backend's number of parts. */
        while (part < size && part <= UINT64_MAX / 4 && (size + part - 1) / part > max_parts)
                part *= 2;
        if (s->vt->max_part_size > 0 && part > s->vt->max_part_size)
                part = s->vt->max_part_size;
        return size <= part ? size : part;
}

bool store_key_is_valid(const char *key) {
        const char *c = key;

        if (isempty(key) || key[0] == '/' || strlen(key) > 1024)
                return false;
        for (const char *p = key; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f || *p == '\\')
                        return false;
        while (*c) {
                size_t n = strcspn(c, "/");

                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                c += n;
                if (*c == '/') {
                        c++;
                        if (!*c)
                                return false;
                }
        }
        return true;
}

void store_report_progress(Store *s, uint64_t bytes) {
        if (s->progress)
                s->progress(s, bytes, s->progress_userdata);
}

int store_url_prefix(const char *rest, bool (*valid)(const char *), char **ret) {
        size_t len = strlen(rest);
        char *prefix;

        if (len > 512 || !valid(rest))
                return -EINVAL;
        prefix = malloc(len + 2);
        if (!prefix)
                return -ENOMEM;
        memcpy(prefix, rest, len);
        if (len > 0 && prefix[len - 1] != '/')
                prefix[len++] = '/';
        prefix[len] = 0;
        *ret = prefix;
        return 0;
}

const char *store_endpoint_host(const char *endpoint) {
        if (strneq(endpoint, "http://", 7))
                return endpoint + 7;
        if (strneq(endpoint, "https://", 8))
                return endpoint + 8;
        return NULL;
}
