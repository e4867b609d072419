/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <inttypes.h>
#include <search.h>
#include <stdio.h>

#include "fs-util.h"
#include "json-util.h"
#include "stat-cache.h"

#define NSEC_PER_SEC ((uint64_t) 1000000000ULL)

typedef struct CacheEntry {
        char *path;
        uint64_t size;
        uint64_t mtime_ns;
        uint64_t ctime_ns;
        uint64_t ino;
        uint64_t dev;
        uint64_t stamp_ns;
        char sha256[SHA256_HEX_SIZE];
} CacheEntry;

/* A tsearch(3) tree of CacheEntry pointers ordered by path: O(log n) lookups, in-order walks for a
 * sorted file, and no global state. */
struct StatCache {
        void *root;
        size_t n_entries;
};

static void cache_entry_free(void *p) {
        CacheEntry *e = p;

        if (!e)
                return;
        free(e->path);
        free(e);
}
DEFINE_CLEANUP_FUNC(CacheEntry *, cache_entry_free);

static int cache_entry_compare(const void *a, const void *b) {
        return strcmp(((const CacheEntry *) a)->path, ((const CacheEntry *) b)->path);
}

static void cache_clear(StatCache *c) {
        tdestroy(c->root, cache_entry_free);
        c->root = NULL;
        c->n_entries = 0;
}

int stat_cache_new(StatCache **ret) {
        StatCache *c;

        assert(ret);

        c = calloc(1, sizeof(StatCache));
        if (!c)
                return -ENOMEM;
        *ret = c;
        return 0;
}

StatCache *stat_cache_free(StatCache *c) {
        if (!c)
                return NULL;
        cache_clear(c);
        return mfree(c);
}

size_t stat_cache_size(const StatCache *c) {
        assert(c);
        return c->n_entries;
}

static CacheEntry *cache_find(const StatCache *c, const char *path) {
        CacheEntry key = { .path = (char *) path };
        CacheEntry **found;

        found = tfind(&key, &c->root, cache_entry_compare);
        return found ? *found : NULL;
}

/* Takes e on success. -EEXIST when the path is there already. */
static int cache_insert(StatCache *c, CacheEntry *e) {
        CacheEntry **slot;

        slot = tsearch(e, &c->root, cache_entry_compare);
        if (!slot)
                return -ENOMEM;
        if (*slot != e)
                return -EEXIST;
        c->n_entries++;
        return 0;
}

static bool cache_entry_racy(const CacheEntry *e) {
        uint64_t newest = MAX(e->mtime_ns, e->ctime_ns);

        if (e->mtime_ns % NSEC_PER_SEC == 0 || e->ctime_ns % NSEC_PER_SEC == 0) {
                if (newest > UINT64_MAX - STAT_CACHE_COARSE_SLACK_NS)
                        return true;
                newest += STAT_CACHE_COARSE_SLACK_NS;
        }
        return newest >= e->stamp_ns;
}

int stat_cache_lookup(const StatCache *c, const CkptEntry *e, char ret_hex[SHA256_HEX_SIZE]) {
        const CacheEntry *ce;

        assert(c);
        assert(e);

        if (e->type != CKPT_ENTRY_FILE)
                return 0;
        ce = cache_find(c, e->path);
        if (!ce)
                return 0;
        if (ce->size != e->size || ce->mtime_ns != e->mtime_ns || ce->ctime_ns != e->ctime_ns ||
            ce->ino != e->ino || ce->dev != e->dev)
                return 0;
        if (cache_entry_racy(ce))
                return 0;
        if (ret_hex)
                memcpy(ret_hex, ce->sha256, SHA256_HEX_SIZE);
        return 1;
}

static void cache_entry_set(CacheEntry *ce, const CkptEntry *e, const char *hex, uint64_t stamp_ns) {
        ce->size = e->size;
        ce->mtime_ns = e->mtime_ns;
        ce->ctime_ns = e->ctime_ns;
        ce->ino = e->ino;
        ce->dev = e->dev;
        ce->stamp_ns = stamp_ns;
        memcpy(ce->sha256, hex, SHA256_HEX_SIZE);
}

int stat_cache_put(StatCache *c, const CkptEntry *e, const char *hex, uint64_t stamp_ns) {
        _cleanup_(cache_entry_freep) CacheEntry *ce = NULL;
        CacheEntry *old;
        int r;

        assert(c);
        assert(e);

        if (e->type != CKPT_ENTRY_FILE || isempty(e->path) || !sha256_hex_valid(hex))
                return -EINVAL;
        old = cache_find(c, e->path);
        if (old) {
                cache_entry_set(old, e, hex, stamp_ns);
                return 0;
        }
        if (c->n_entries >= STAT_CACHE_ENTRIES_MAX)
                return -E2BIG;
        ce = calloc(1, sizeof(CacheEntry));
        if (!ce)
                return -ENOMEM;
        ce->path = strdup(e->path);
        if (!ce->path)
                return -ENOMEM;
        cache_entry_set(ce, e, hex, stamp_ns);
        r = cache_insert(c, ce);
        if (r < 0)
                return r;
        TAKE_PTR(ce);
        return 0;
}

int stat_cache_remove(StatCache *c, const char *path) {
        CacheEntry *ce;

        assert(c);

        ce = path ? cache_find(c, path) : NULL;
        if (!ce)
                return 0;
        (void) tdelete(ce, &c->root, cache_entry_compare);
        cache_entry_free(ce);
        c->n_entries--;
        return 1;
}

/* ---- walking the tree in path order */

typedef void (*CacheVisit)(CacheEntry *e, void *userdata);

typedef struct WalkClosure {
        CacheVisit visit;
        void *userdata;
} WalkClosure;

static void walk_action(const void *node, VISIT which, void *closure) {
        WalkClosure *w = closure;

        /* In order: an inner node after its left subtree, a leaf once. */
        if (which == postorder || which == leaf)
                w->visit(*(CacheEntry * const *) node, w->userdata);
}

static void cache_walk(const StatCache *c, CacheVisit visit, void *userdata) {
        WalkClosure w = { .visit = visit, .userdata = userdata };

        twalk_r(c->root, walk_action, &w);
}

typedef struct RetainState {
        const CkptScan *scan;
        CacheEntry **drop;
        size_t n_drop;
} RetainState;

static void retain_visit(CacheEntry *e, void *userdata) {
        RetainState *s = userdata;
        const CkptEntry *found = ckpt_scan_find(s->scan, e->path);

        if (!found || found->type != CKPT_ENTRY_FILE)
                s->drop[s->n_drop++] = e;
}

int stat_cache_retain(StatCache *c, const CkptScan *s) {
        _cleanup_free_ CacheEntry **drop = NULL;
        RetainState st;

        assert(c);
        assert(s);

        if (c->n_entries == 0)
                return 0;
        /* Entries cannot leave the tree while twalk_r() walks it: collect them first. */
        drop = calloc(c->n_entries, sizeof(CacheEntry *));
        if (!drop)
                return -ENOMEM;
        st = (RetainState) { .scan = s, .drop = drop };
        cache_walk(c, retain_visit, &st);
        for (size_t i = 0; i < st.n_drop; i++)
                (void) stat_cache_remove(c, drop[i]->path);
        return (int) st.n_drop;
}

/* ---- persistence */

static int json_add_u64(cJSON *o, const char *name, uint64_t v) {
        char buf[21];

        (void) snprintf(buf, sizeof(buf), "%" PRIu64, v);
        return cJSON_AddStringToObject(o, name, buf) ? 0 : -ENOMEM;
}

static cJSON *cache_entry_to_json(const CacheEntry *e) {
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddStringToObject(o, "path", e->path) || json_add_u64(o, "size", e->size) < 0 ||
            json_add_u64(o, "mtime_ns", e->mtime_ns) < 0 || json_add_u64(o, "ctime_ns", e->ctime_ns) < 0 ||
            json_add_u64(o, "ino", e->ino) < 0 || json_add_u64(o, "dev", e->dev) < 0 ||
            json_add_u64(o, "stamp_ns", e->stamp_ns) < 0 || !cJSON_AddStringToObject(o, "sha256", e->sha256))
                return NULL;
        return TAKE_PTR(o);
}

typedef struct SaveState {
        cJSON *array;
        int r;
} SaveState;

static void save_visit(CacheEntry *e, void *userdata) {
        SaveState *s = userdata;
        cJSON *o;

        if (s->r < 0)
                return;
        o = cache_entry_to_json(e);
        if (!o || !cJSON_AddItemToArray(s->array, o)) {
                cJSON_Delete(o);
                s->r = -ENOMEM;
        }
}

int stat_cache_save(const StatCache *c, const char *path) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *text = NULL;
        SaveState s = {};

        assert(c);
        assert(path);

        root = cJSON_CreateObject();
        if (!root || !cJSON_AddNumberToObject(root, "version", STAT_CACHE_VERSION))
                return -ENOMEM;
        s.array = cJSON_AddArrayToObject(root, "entries");
        if (!s.array)
                return -ENOMEM;
        cache_walk(c, save_visit, &s);
        if (s.r < 0)
                return s.r;
        text = cJSON_PrintUnformatted(root);
        if (!text)
                return -ENOMEM;
        return write_file_atomic(path, text, strlen(text), 0600);
}

/* A decimal string of at most 20 digits that fits 64 bits: what json_add_u64() writes. */
static int parse_u64_string(const cJSON *v, uint64_t *ret) {
        const char *s = cJSON_GetStringValue(v);
        uint64_t n = 0;

        if (isempty(s) || strlen(s) > 20)
                return -EBADMSG;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EBADMSG;
                if (n > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -EBADMSG;
                n = n * 10 + (uint64_t) (*s - '0');
        }
        *ret = n;
        return 0;
}

/* Relative, '/'-separated, no empty, "." or ".." components: what a scan produces. */
static bool cache_path_valid(const char *p) {
        size_t len;

        if (isempty(p) || (len = strlen(p)) > CKPT_SCAN_PATH_MAX)
                return false;
        for (const char *s = p, *e; s; s = e ? e + 1 : NULL) {
                size_t n;

                e = strchr(s, '/');
                n = e ? (size_t) (e - s) : strlen(s);
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
        }
        return true;
}

static int cache_entry_from_json(const cJSON *o, CacheEntry **ret) {
        _cleanup_(cache_entry_freep) CacheEntry *e = NULL;
        const char *path, *hex;

        if (!cJSON_IsObject(o))
                return -EBADMSG;
        path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "path"));
        hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "sha256"));
        if (!cache_path_valid(path) || !sha256_hex_valid(hex))
                return -EBADMSG;
        e = calloc(1, sizeof(CacheEntry));
        if (!e)
                return -ENOMEM;
        e->path = strdup(path);
        if (!e->path)
                return -ENOMEM;
        memcpy(e->sha256, hex, SHA256_HEX_SIZE);
        if (parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "size"), &e->size) < 0 ||
            parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "mtime_ns"), &e->mtime_ns) < 0 ||
            parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "ctime_ns"), &e->ctime_ns) < 0 ||
            parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "ino"), &e->ino) < 0 ||
            parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "dev"), &e->dev) < 0 ||
            parse_u64_string(cJSON_GetObjectItemCaseSensitive(o, "stamp_ns"), &e->stamp_ns) < 0)
                return -EBADMSG;
        *ret = TAKE_PTR(e);
        return 0;
}

static int cache_fill_from_json(StatCache *c, const cJSON *root) {
        const cJSON *version, *entries, *item;
        int r;

        version = cJSON_GetObjectItemCaseSensitive(root, "version");
        entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
        if (!cJSON_IsNumber(version) || cJSON_GetNumberValue(version) != STAT_CACHE_VERSION ||
            !cJSON_IsArray(entries))
                return -EBADMSG;
        cJSON_ArrayForEach(item, entries) {
                _cleanup_(cache_entry_freep) CacheEntry *e = NULL;

                if (c->n_entries >= STAT_CACHE_ENTRIES_MAX)
                        return -E2BIG;
                r = cache_entry_from_json(item, &e);
                if (r < 0)
                        return r;
                r = cache_insert(c, e);
                if (r == -EEXIST)
                        return -EBADMSG; /* the same path twice: not a file we wrote */
                if (r < 0)
                        return r;
                TAKE_PTR(e);
        }
        return 0;
}

int stat_cache_load(StatCache *c, const char *path) {
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r;

        assert(c);
        assert(path);

        cache_clear(c);
        r = read_file_bounded(path, STAT_CACHE_FILE_MAX, &text, &len);
        if (r < 0)
                return r;
        root = json_parse_exact(text, len);
        if (!cJSON_IsObject(root))
                return -EBADMSG;
        r = cache_fill_from_json(c, root);
        if (r < 0)
                cache_clear(c);
        return r;
}
