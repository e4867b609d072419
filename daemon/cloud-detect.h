/* SPDX-License-Identifier: MIT */
#pragma once

#include "config.h"

/* Which cloud this VM runs on, from the DMI strings the hypervisor gives the guest
 * (dmi_dir is normally /sys/class/dmi/id; TRAINSUPD_DMI_DIR overrides it for tests).
 * Returns a concrete provider, or CLOUD_PROVIDER_NONE when nothing matches. */
CloudProvider cloud_detect(const char *dmi_dir);

/* The provider to use: the configured one, or the detected one for "auto". */
CloudProvider cloud_resolve_provider(CloudProvider configured, const char *dmi_dir);
