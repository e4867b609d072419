/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdio.h>

#include "macro.h"
#include "time-util.h"

usec_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                abort(); /* only with an invalid clock id: a programming error */
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

char *format_rfc3339(char buf[static RFC3339_MAX], usec_t realtime_usec) {
        time_t sec = (time_t) (realtime_usec / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm)) {
                snprintf(buf, RFC3339_MAX, "invalid");
                return buf;
        }
        snprintf(buf, RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (unsigned) ((realtime_usec % USEC_PER_SEC) / USEC_PER_MSEC));
        return buf;
}

static int parse_fixed_digits(const char **p, unsigned n, int *ret) {
        int v = 0;

        for (unsigned i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int parse_offset(const char *p, long *ret_offset_sec) {
        int hh, mm, sign;

        if (streq(p, "Z") || streq(p, "z")) {
                *ret_offset_sec = 0;
                return 0;
        }
        if (*p != '+' && *p != '-')
                return -EINVAL;
        sign = *p == '-' ? -1 : 1;
        p++;
        if (parse_fixed_digits(&p, 2, &hh) < 0 || *p++ != ':' || parse_fixed_digits(&p, 2, &mm) < 0 || *p)
                return -EINVAL;
        if (hh > 23 || mm > 59)
                return -EINVAL;
        *ret_offset_sec = sign * (hh * 3600L + mm * 60L);
        return 0;
}

int parse_rfc3339(const char *s, usec_t *ret) {
        struct tm tm = {};
        const char *p = s;
        int year, mon, day, hh, mm, ss;
        usec_t frac = 0, scale = USEC_PER_SEC;
        long offset;
        time_t t;

        if (!s)
                return -EINVAL;
        if (parse_fixed_digits(&p, 4, &year) < 0 || *p++ != '-' || parse_fixed_digits(&p, 2, &mon) < 0 ||
            *p++ != '-' || parse_fixed_digits(&p, 2, &day) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
                return -EINVAL;
        p++;
        if (parse_fixed_digits(&p, 2, &hh) < 0 || *p++ != ':' || parse_fixed_digits(&p, 2, &mm) < 0 ||
            *p++ != ':' || parse_fixed_digits(&p, 2, &ss) < 0)
                return -EINVAL;
        if (*p == '.') {
                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++)
                        if (scale > 1) {
                                scale /= 10;
                                frac += (usec_t) (*p - '0') * scale;
                        }
        }
        if (parse_offset(p, &offset) < 0)
                return -EINVAL;
        if (year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60)
                return -EINVAL;

        tm = (struct tm) { .tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                           .tm_hour = hh, .tm_min = mm, .tm_sec = ss };
        t = timegm(&tm);
        if (t == (time_t) -1 || t - offset < 0)
                return -EINVAL;
        *ret = (usec_t) (t - offset) * USEC_PER_SEC + frac;
        return 0;
}
