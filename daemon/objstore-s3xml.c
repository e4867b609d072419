/* SPDX-License-Identifier: MIT */
#include <limits.h>
#include <stdio.h>

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

/* ---- ListMultipartUploads ---- */

int objstore_s3xml_uploads_query(const char *prefix, const char *key_marker, const char *upload_id_marker,
                                 unsigned max, char **ret) {
        _cleanup_free_ char *ep = NULL, *ek = NULL, *eu = NULL, *mu = NULL;
        int r;

        /* Sorted: key-marker < max-uploads < prefix < upload-id-marker < uploads. */
        r = http_url_escape(prefix ?: "", NULL, &ep);
        if (r >= 0 && key_marker)
                r = http_url_escape(key_marker, NULL, &ek);
        if (r >= 0 && upload_id_marker)
                r = http_url_escape(upload_id_marker, NULL, &eu);
        if (r < 0)
                return r;
        if (max > 0 && asprintf(&mu, "max-uploads=%u&", max) < 0)
                return -ENOMEM;
        if (asprintf(ret, "%s%s%s%sprefix=%s%s%s&uploads=", ek ? "key-marker=" : "", ek ?: "", ek ? "&" : "",
                     mu ?: "", ep, eu ? "&upload-id-marker=" : "", eu ?: "") < 0)
                return -ENOMEM;
        return 0;
}

int objstore_s3xml_uploads_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_key_marker,
                                 char **ret_upload_id_marker) {
        _cleanup_(s3_uploads_page_done) S3UploadsPage page = {};
        int r;

        r = s3_parse_uploads(xml, len, &page);
        if (r < 0)
                return r;
        for (size_t i = 0; i < page.n_uploads; i++) {
                r = objstore_upload_add(op, page.uploads[i].key, page.uploads[i].upload_id, page.uploads[i].initiated);
                if (r < 0)
                        return r;
        }
        *ret_key_marker = page.truncated ? TAKE_PTR(page.next_key_marker) : NULL;
        *ret_upload_id_marker = page.truncated ? TAKE_PTR(page.next_upload_id_marker) : NULL;
        return 0;
}
