/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs-util.h"
#include "manifest.h"
#include "writer-id.h"

/* A field from a file (DMI, boot id): its first line, if that is a valid writer field. */
static char *read_field(const char *dir, const char *name) {
        _cleanup_free_ char *path = NULL, *data = NULL;
        size_t len = 0;

        if (asprintf(&path, "%s/%s", dir, name) < 0 || read_file_bounded(path, 4096, &data, &len) < 0)
                return NULL;
        data[strcspn(data, "\n")] = 0;
        return snapshot_writer_field_is_valid(data) ? TAKE_PTR(data) : NULL;
}

void writer_id_done(WriterId *w) {
        if (!w)
                return;
        free(w->instance_id);
        free(w->boot_id);
        free(w->hostname);
        *w = (WriterId) {};
}

int writer_id_read(const char *dmi_dir, WriterId *ret) {
        WriterId w = {};
        char host[256] = {};

        if (gethostname(host, sizeof(host) - 1) < 0 || !snapshot_writer_field_is_valid(host))
                strcpy(host, "localhost");
        w.instance_id = read_field(dmi_dir, "product_uuid") ?: read_field(dmi_dir, "board_serial") ?: strdup(host);
        w.boot_id = read_field("/proc/sys/kernel/random", "boot_id") ?: strdup("unknown");
        w.hostname = strdup(host);
        if (!w.instance_id || !w.boot_id || !w.hostname) {
                writer_id_done(&w);
                return -ENOMEM;
        }
        *ret = w;
        return 0;
}
