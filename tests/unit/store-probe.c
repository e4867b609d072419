/* SPDX-License-Identifier: MIT */
/* store-probe: runs one Store operation (daemon/storage.h) on its own sd-event loop, the way the
 * daemon does, against any storage URL:
 *
 *   store-probe [--debug] [--endpoint URL] [--region R] [--credentials-file F] [--ca-file F]
 *               [--concurrency N] [--metadata-url URL] URL COMMAND ARGS...
 *     put KEY FILE [--create-only] [--part-size BYTES]   (multipart when FILE is larger)
 *     get KEY OUT [--offset O] [--len L]
 *     cat KEY                                             (get_data, to stdout)
 *     list PREFIX                                         (one "KEY SIZE MTIME_USEC" line each)
 *     rm KEY
 *
 * Prints "ok" or "error=<ERRNO NAME>" on the last line. Exit: 0 success, 1 operation failed,
 * 2 usage or setup error. Used by tests/integration/t-storage-s3.sh. */
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "curl-glue.h"
#include "http.h"
#include "log.h"
#include "sha256.h"
#include "storage.h"
#include "strv.h"
#include "worker.h"

static const char *errno_name(int e) {
        static const struct {
                int e;
                const char *name;
        } table[] = {
                { EPERM, "EPERM" }, { ENOENT, "ENOENT" }, { EIO, "EIO" }, { EAGAIN, "EAGAIN" },
                { ENOMEM, "ENOMEM" }, { EACCES, "EACCES" }, { EBUSY, "EBUSY" }, { EEXIST, "EEXIST" },
                { EINVAL, "EINVAL" }, { EFBIG, "EFBIG" }, { ERANGE, "ERANGE" }, { EBADMSG, "EBADMSG" },
                { EPROTO, "EPROTO" }, { EPROTONOSUPPORT, "EPROTONOSUPPORT" }, { EOPNOTSUPP, "EOPNOTSUPP" },
                { ECONNRESET, "ECONNRESET" }, { ETIMEDOUT, "ETIMEDOUT" }, { ECONNREFUSED, "ECONNREFUSED" },
                { ECANCELED, "ECANCELED" }, { ENOKEY, "ENOKEY" }, { ENODATA, "ENODATA" },
        };
        static char buf[32];

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i].e == e)
                        return table[i].name;
        snprintf(buf, sizeof(buf), "errno-%d", e);
        return buf;
}

typedef struct Result {
        bool done;
        int error;
        char *data;
        size_t len;
        StoreObject *objects;
        size_t n;
} Result;

static void on_done(Store *s, int error, void *userdata) {
        Result *res = userdata;
        res->done = true;
        res->error = error;
}

static void on_data(Store *s, int error, char *data, size_t len, void *userdata) {
        Result *res = userdata;
        *res = (Result) { .done = true, .error = error, .data = data, .len = len };
}

static void on_list(Store *s, int error, StoreObject *objects, size_t n, void *userdata) {
        Result *res = userdata;
        *res = (Result) { .done = true, .error = error, .objects = objects, .n = n };
}

static int parse_u64(const char *s, uint64_t *ret) {
        char *end;

        if (!s || !*s || *s == '-')
                return -EINVAL;
        errno = 0;
        *ret = strtoull(s, &end, 10);
        return errno != 0 || *end ? -EINVAL : 0;
}

static int json_str(char **json, const char *name, const char *value) {
        char *n;

        if (!value)
                return 0;
        for (const char *p = value; *p; p++)
                if (*p == '"' || *p == '\\' || (unsigned char) *p < 0x20)
                        return -EINVAL;
        if (asprintf(&n, "%s,\"%s\":\"%s\"", *json, name, value) < 0)
                return -ENOMEM;
        free(*json);
        *json = n;
        return 0;
}

typedef struct Args {
        const char *endpoint, *region, *credentials, *ca_file, *metadata_url, *url, *cmd, *a1, *a2;
        uint64_t part_size, offset, len, concurrency;
        bool create_only;
} Args;

static int make_config(const Args *a, Config **ret) {
        _cleanup_free_ char *storage = NULL, *json = NULL, *cloud = strdup("");
        char **problems = NULL;
        int r;

        if (asprintf(&storage, "\"concurrency\":%" PRIu64, a->concurrency) < 0)
                return -ENOMEM;
        r = json_str(&storage, "url", a->url);
        if (r >= 0)
                r = json_str(&storage, "endpoint", a->endpoint);
        if (r >= 0)
                r = json_str(&storage, "region", a->region);
        if (r >= 0)
                r = json_str(&storage, "credentials_file", a->credentials);
        if (r >= 0)
                r = json_str(&storage, "ca_file", a->ca_file);
        if (r >= 0)
                r = cloud ? json_str(&cloud, "metadata_url", a->metadata_url) : -ENOMEM; /* ",\"metadata_url\":..." */
        if (r < 0)
                return r;
        if (asprintf(&json, "{\"job_id\":\"probe\",\"tasks\":[{\"name\":\"t\",\"runtime\":\"exec\","
                     "\"command\":[\"true\"],\"checkpoint_dir\":\"/nonexistent/store-probe/ckpt\"}],"
                     "\"storage\":{%s}%s%s%s}", storage, *cloud ? ",\"cloud\":{" : "", *cloud ? cloud + 1 : "",
                     *cloud ? "}" : "") < 0)
                return -ENOMEM;
        r = config_parse(json, strlen(json), NULL, "/nonexistent/store-probe/state", ret, &problems);
        STRV_FOREACH(p, problems)
                fprintf(stderr, "store-probe: config: %s\n", *p);
        strv_free(problems);
        return r;
}

static int start_put(Store *s, const Args *a, int *fd, char ***part_sha, Result *res) {
        struct stat st;
        uint8_t d[SHA256_DIGEST_SIZE];
        char hex[SHA256_HEX_SIZE];
        static char whole[SHA256_HEX_SIZE];
        StorePut p = { .key = a->a1, .create_only = a->create_only };
        uint64_t part;
        int r;

        *fd = open(a->a2, O_RDONLY | O_CLOEXEC);
        if (*fd < 0 || fstat(*fd, &st) < 0)
                return negative_errno();
        p.fd = *fd;
        p.len = (uint64_t) st.st_size;
        r = sha256_fd_range(*fd, 0, p.len, d, NULL);
        if (r < 0)
                return r;
        p.sha256 = sha256_to_hex(d, whole);
        part = a->part_size > 0 ? a->part_size : store_part_size(s, p.len);
        if (part > 0 && p.len > part) {
                p.part_size = part;
                p.n_parts = (size_t) ((p.len + part - 1) / part);
                for (size_t i = 0; i < p.n_parts; i++) {
                        r = sha256_fd_range(*fd, i * part, MIN(part, p.len - i * part), d, NULL);
                        if (r < 0)
                                return r;
                        r = strv_extend(part_sha, sha256_to_hex(d, hex));
                        if (r < 0)
                                return r;
                }
                p.part_sha256 = *part_sha;
        }
        return s->vt->put(s, &p, on_done, res);
}

static int start(Store *s, const Args *a, int *fd, char ***part_sha, Result *res) {
        if (streq(a->cmd, "put") && a->a1 && a->a2)
                return start_put(s, a, fd, part_sha, res);
        if (streq(a->cmd, "get") && a->a1 && a->a2) {
                *fd = open(a->a2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (*fd < 0)
                        return negative_errno();
                return s->vt->get(s, a->a1, a->offset, a->len, *fd, 0, on_done, res);
        }
        if (streq(a->cmd, "cat") && a->a1)
                return s->vt->get_data(s, a->a1, 64 * 1024 * 1024, on_data, res);
        if (streq(a->cmd, "list") && a->a1)
                return s->vt->list(s, a->a1, on_list, res);
        if (streq(a->cmd, "rm") && a->a1)
                return s->vt->remove(s, a->a1, on_done, res);
        return -EINVAL;
}

static int parse_args(int argc, char **argv, Args *a) {
        static const struct option options[] = {
                { "endpoint", required_argument, NULL, 'e' },
                { "region", required_argument, NULL, 'r' },
                { "credentials-file", required_argument, NULL, 'c' },
                { "ca-file", required_argument, NULL, 'a' },
                { "metadata-url", required_argument, NULL, 'm' },
                { "concurrency", required_argument, NULL, 'j' },
                { "create-only", no_argument, NULL, 'C' },
                { "part-size", required_argument, NULL, 'p' },
                { "offset", required_argument, NULL, 'o' },
                { "len", required_argument, NULL, 'l' },
                { "debug", no_argument, NULL, 'd' },
                {}
        };
        const char *pos[4];
        size_t n = 0;
        int c;

        *a = (Args) { .concurrency = 4 };
        /* Options may come anywhere (after the command too). */
        while ((c = getopt_long(argc, argv, "-", options, NULL)) >= 0) {
                switch (c) {
                case 1:
                        if (n >= ELEMENTSOF(pos))
                                return -EINVAL;
                        pos[n++] = optarg;
                        break;
                case 'e': a->endpoint = optarg; break;
                case 'r': a->region = optarg; break;
                case 'c': a->credentials = optarg; break;
                case 'a': a->ca_file = optarg; break;
                case 'm': a->metadata_url = optarg; break;
                case 'C': a->create_only = true; break;
                case 'd': log_set_max_level(LOG_DEBUG); break;
                case 'j': if (parse_u64(optarg, &a->concurrency) < 0) return -EINVAL; break;
                case 'p': if (parse_u64(optarg, &a->part_size) < 0) return -EINVAL; break;
                case 'o': if (parse_u64(optarg, &a->offset) < 0) return -EINVAL; break;
                case 'l': if (parse_u64(optarg, &a->len) < 0) return -EINVAL; break;
                default: return -EINVAL;
                }
        }
        if (n < 3)
                return -EINVAL;
        a->url = pos[0];
        a->cmd = pos[1];
        a->a1 = pos[2];
        a->a2 = n > 3 ? pos[3] : NULL;
        return 0;
}

static void print_result(const Args *a, const Result *res) {
        if (res->error == 0 && streq(a->cmd, "cat"))
                fwrite(res->data, 1, res->len, stdout);
        for (size_t i = 0; res->error == 0 && i < res->n; i++)
                printf("%s %" PRIu64 " %" PRIu64 "\n", res->objects[i].key, res->objects[i].size,
                       (uint64_t) res->objects[i].modified);
        if (res->error == 0)
                printf("%sok\n", streq(a->cmd, "cat") && res->len > 0 && res->data[res->len - 1] != '\n' ? "\n" : "");
        else
                printf("error=%s\n", errno_name(-res->error));
}

int main(int argc, char **argv) {
        _cleanup_(config_freep) Config *config = NULL;
        sd_event *event = NULL;
        CurlGlue *glue = NULL;
        Worker *worker = NULL;
        Store *store = NULL;
        char **part_sha = NULL;
        Result res = {};
        Args a;
        int fd = -EBADF, r, ret = 2;

        if (parse_args(argc, argv, &a) < 0) {
                fputs("Usage: store-probe [--endpoint URL] [--region R] [--credentials-file F] [--ca-file F]\n"
                      "                   [--concurrency N] [--metadata-url URL] URL put KEY FILE [--create-only] [--part-size N]\n"
                      "                   | get KEY OUT [--offset O --len L] | cat KEY | list PREFIX | rm KEY\n",
                      stderr);
                return 2;
        }
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return 2;
        r = make_config(&a, &config);
        if (r >= 0)
                r = sd_event_new(&event);
        if (r >= 0)
                r = curl_glue_new(&glue, event, http_on_curl_finished);
        if (r >= 0)
                r = worker_new(&worker, event, 2);
        if (r >= 0)
                r = store_new(&store, &(StoreParams) { .event = event, .glue = glue, .worker = worker, .config = config });
        if (r < 0) {
                fprintf(stderr, "store-probe: setting up failed: %s\n", strerror(-r));
                printf("error=%s\n", errno_name(-r));
                goto finish;
        }
        r = start(store, &a, &fd, &part_sha, &res);
        if (r < 0)
                res = (Result) { .done = true, .error = r };
        while (!res.done) {
                r = sd_event_run(event, UINT64_MAX);
                if (r < 0) {
                        fprintf(stderr, "store-probe: event loop failed: %s\n", strerror(-r));
                        goto finish;
                }
        }
        print_result(&a, &res);
        ret = res.error == 0 ? 0 : 1;
finish:
        fflush(stdout);
        free(res.data);
        store_objects_free(res.objects, res.n);
        strv_free(part_sha);
        store_free(store);
        worker_free(worker);
        curl_glue_free(glue);
        sd_event_unref(event);
        safe_close(fd);
        curl_global_cleanup();
        return ret;
}
