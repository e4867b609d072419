/* SPDX-License-Identifier: MIT */
#include "storage.h"

/* Not implemented yet: store_new() refuses gs:// with -EPROTONOSUPPORT. */
const StoreVTable store_gs_vtable = { .scheme = "gs" };
