/* SPDX-License-Identifier: MIT */
#include "storage.h"

/* Not implemented yet: store_new() refuses az:// with -EPROTONOSUPPORT. */
const StoreVTable store_az_vtable = { .scheme = "az" };
