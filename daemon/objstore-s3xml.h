/* SPDX-License-Identifier: MIT */
#pragma once

/* S3's XML API (s3-request.h) as ObjstoreProvider hooks: s3:// (storage-s3.c) and gs:// (GCS's
 * XML API, storage-gs.c) both speak it — the list pages, error documents and the multipart
 * upload (POST ?uploads, PUT ?partNumber=N&uploadId=, POST ?uploadId= with the parts' ETags,
 * DELETE ?uploadId= to abort). */

#include "objstore-http.h"
#include "s3-request.h"

#define OBJSTORE_S3XML_COMMIT_ATTEMPTS 3U

int objstore_s3xml_list_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_next);
int objstore_s3xml_part_query(size_t i, const char *upload_id, char **ret);

/* The provider fields both take as they are. */
#define OBJSTORE_S3XML_HOOKS                                            \
        .range_header = "Range",                                        \
        .part_etags = true,                                             \
        .commit_attempts = OBJSTORE_S3XML_COMMIT_ATTEMPTS,              \
        .parse_error = s3_parse_error,                                  \
        .list_query = s3_list_query,                                    \
        .list_parse = objstore_s3xml_list_parse,                        \
        .mp_commit_method = "POST",                                     \
        .mp_begin_parse = s3_parse_initiate,                            \
        .mp_part_query = objstore_s3xml_part_query,                     \
        .mp_commit_query = s3_upload_id_query,                          \
        .mp_commit_body = s3_complete_body,                             \
        .mp_commit_parse = s3_parse_complete,                           \
        .mp_abort_query = s3_upload_id_query
