/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <stdio.h>
#include <strings.h>

#include "cloud-detect.h"

/* The first line of a DMI attribute, trimmed; "" when it cannot be read. */
static void dmi_read(const char *dir, const char *name, char *buf, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        char path[4096];
        ssize_t n;

        buf[0] = 0;
        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return;
        n = read(fd, buf, size - 1);
        if (n <= 0)
                return;
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        for (size_t l = strlen(buf); l > 0 && buf[l - 1] == ' '; l--)
                buf[l - 1] = 0;
}

CloudProvider cloud_detect(const char *dmi_dir) {
        char vendor[256], product[256], asset[256], bios[256], uuid[256];

        dmi_read(dmi_dir, "sys_vendor", vendor, sizeof(vendor));
        dmi_read(dmi_dir, "product_name", product, sizeof(product));
        dmi_read(dmi_dir, "chassis_asset_tag", asset, sizeof(asset));
        dmi_read(dmi_dir, "bios_vendor", bios, sizeof(bios));
        dmi_read(dmi_dir, "product_uuid", uuid, sizeof(uuid));

        if (streq(vendor, "Amazon EC2") || streq(bios, "Amazon EC2") || strncasecmp(uuid, "ec2", 3) == 0)
                return CLOUD_PROVIDER_AWS;
        if (streq(product, "Google Compute Engine") || streq(vendor, "Google"))
                return CLOUD_PROVIDER_GCE;
        /* Azure marks every VM with this asset tag. */
        if (streq(asset, "7783-7084-3265-9085-8269-3286-77"))
                return CLOUD_PROVIDER_AZURE;
        if (streq(vendor, "Alibaba Cloud") || strneq(product, "Alibaba Cloud", 13))
                return CLOUD_PROVIDER_ALIBABA;
        return CLOUD_PROVIDER_NONE;
}

CloudProvider cloud_resolve_provider(CloudProvider configured, const char *dmi_dir) {
        if (configured != CLOUD_PROVIDER_AUTO)
                return configured;
        return cloud_detect(dmi_dir);
}
