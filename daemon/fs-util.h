/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with the given mode for the parts it creates. */
int mkdir_p(const char *path, mode_t mode);

/* Replaces path with data: a temporary file beside it, fsync, rename, fsync of the directory.
 * A reader sees the old content or the new one, never a mix. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Reads a whole regular file of at most max bytes; NUL-terminated. -EFBIG when larger. */
int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_len);
