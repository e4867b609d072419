/* SPDX-License-Identifier: MIT */
#pragma once

/* cmocka needs these before its header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Reads tests/fixtures/<subdir>/<name> whole. With nul, a NUL follows the data (not counted in
 * *ret_len); without it the buffer holds exactly the file, so ASan catches a parser that reads
 * past the length it was given. */
static inline char *fixture_read(const char *subdir, const char *name, size_t *ret_len, bool nul) {
        char path[512];
        char *buf;
        long n;
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s/%s", FIXTURES_DIR, subdir, name);
        f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open %s", path);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = malloc((size_t) n + (nul ? 1 : 0) + (n == 0 ? 1 : 0));
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
        if (nul)
                buf[n] = 0;
        fclose(f);
        *ret_len = (size_t) n;
        return buf;
}
