/* SPDX-License-Identifier: MIT */
#pragma once

/* S3's XML API (s3-request.h) as ObjstoreProvider hooks: s3:// (storage-s3.c) and gs:// (GCS's
 * XML API, storage-gs.c) both speak it — the list pages, error documents and the multipart
 * upload (POST ?uploads, PUT ?partNumber=N&uploadId=, POST ?uploadId= with the parts' ETags,
 * DELETE ?uploadId= to abort), and ListMultipartUploads (GET ?uploads with prefix, key-marker and
 * upload-id-marker; <Upload> with <Key>, <UploadId>, <Initiated>) for sweep_uploads — which GCS's
 * XML API has too ("List multipart uploads", GET /BUCKET?uploads). */

#include "objstore-http.h"
#include "s3-request.h"

#define OBJSTORE_S3XML_COMMIT_ATTEMPTS 3U

int objstore_s3xml_list_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_next);
int objstore_s3xml_part_query(size_t i, const char *upload_id, char **ret);
/* "[key-marker=K&][max-uploads=N&]prefix=P[&upload-id-marker=U]&uploads=" (canonical). */
int objstore_s3xml_uploads_query(const char *prefix, const char *key_marker, const char *upload_id_marker,
                                 unsigned max, char **ret);
/* One <ListMultipartUploadsResult> page: objstore_upload_add() for every <Upload>; the markers
 * of the next page when <IsTruncated> (-EBADMSG without <NextKeyMarker>). Bounded as
 * s3-request.h's parsers: -EBADMSG for malformed XML, DTDs, deep nesting, an <Upload> without
 * Key or UploadId; -EFBIG beyond the size limits. An unparsable <Initiated> is an unknown age. */
int objstore_s3xml_uploads_parse(ObjstoreOp *op, const char *xml, size_t len, char **ret_key_marker,
                                 char **ret_upload_id_marker);

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
        .mp_abort_query = s3_upload_id_query,                           \
        .mp_list_query = objstore_s3xml_uploads_query,                  \
        .mp_list_parse = objstore_s3xml_uploads_parse
