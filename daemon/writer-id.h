/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Who writes a snapshot (recorded in its manifest): the machine (DMI product UUID, else board
 * serial, else the host name), this boot (the kernel's boot id) and the host name. Fields that
 * cannot be read or are not valid manifest fields fall back as described. */
typedef struct WriterId {
        char *instance_id;
        char *boot_id;
        char *hostname;
} WriterId;

/* dmi_dir: /sys/class/dmi/id, or a test's directory. */
int writer_id_read(const char *dmi_dir, WriterId *ret);
void writer_id_done(WriterId *w);
