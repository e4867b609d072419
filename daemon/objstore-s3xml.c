/* SPDX-License-Identifier: MIT */
#include <limits.h>

#include "objstore-s3xml.h"

int objstore_s3xml_list_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_next) {
        _cleanup_(s3_list_page_done) S3ListPage page = {};
        int r;

        r = s3_parse_list(xml, len, &page);
        if (r < 0)
                return r;
        for (size_t i = 0; i < page.n_objects; i++) {
                r = objstore_list_add(op, page.objects[i].key, page.objects[i].size, page.objects[i].modified);
                if (r < 0)
                        return r;
        }
        *ret_next = page.truncated ? TAKE_PTR(page.next_token) : NULL;
        return 0;
}

int objstore_s3xml_part_query(size_t i, const char *upload_id, char **ret) {
        if (i >= UINT_MAX)
                return -ERANGE;
        return s3_part_query((unsigned) i + 1, upload_id, ret);
}
