/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "az-request.h"
#include "strv.h"

/* azurite's well-known development key (public, in Microsoft's documentation). */
#define DEV_KEY "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#define AZURITE "http://127.0.0.1:10000/devstoreaccount1"

static void test_names(void **state) {
        assert_true(az_account_name_is_valid("devstoreaccount1"));
        assert_false(az_account_name_is_valid("ab"));
        assert_false(az_account_name_is_valid("Upper"));
        assert_false(az_account_name_is_valid("a-b-c"));
        assert_false(az_account_name_is_valid("abcdefghijklmnopqrstuvwxy")); /* 25 */
        assert_true(az_container_name_is_valid("ckpt"));
        assert_true(az_container_name_is_valid("my-ckpt-1"));
        assert_false(az_container_name_is_valid("my--ckpt"));
        assert_false(az_container_name_is_valid("-ckpt"));
        assert_false(az_container_name_is_valid("ckpt-"));
        assert_false(az_container_name_is_valid("Ckpt"));
        assert_false(az_container_name_is_valid("ck"));
}

static void test_location(void **state) {
        char *a, *c, *p;

        assert_int_equal(az_location_parse("acct/ckpt", &a, &c, &p), 0);
        assert_string_equal(a, "acct");
        assert_string_equal(c, "ckpt");
        assert_string_equal(p, "");
        free(a), free(c), free(p);
        assert_int_equal(az_location_parse("acct/ckpt/jobs/x", &a, &c, &p), 0);
        assert_string_equal(p, "jobs/x/");
        free(a), free(c), free(p);
        assert_int_equal(az_location_parse("acct/ckpt/jobs/", &a, &c, &p), 0);
        assert_string_equal(p, "jobs/");
        free(a), free(c), free(p);
        assert_int_equal(az_location_parse("acct", &a, &c, &p), -EINVAL);
        assert_int_equal(az_location_parse("acct/", &a, &c, &p), -EINVAL);
        assert_int_equal(az_location_parse("acct/ckpt/a/../b", &a, &c, &p), -EINVAL);
        assert_int_equal(az_location_parse("acct/ckpt/a//b", &a, &c, &p), -EINVAL);
        assert_int_equal(az_location_parse("ACCT/ckpt", &a, &c, &p), -EINVAL);
}

static void test_url(void **state) {
        char *u;

        assert_int_equal(az_url(NULL, "acct", "ckpt", "a b/c+d", NULL, NULL, &u), 0);
        assert_string_equal(u, "https://acct.blob.core.windows.net/ckpt/a%20b/c%2Bd");
        free(u);
        assert_int_equal(az_url(AZURITE "/", "devstoreaccount1", "ckpt", "k", "comp=block&blockid=QQ%3D%3D", NULL, &u),
                         0);
        assert_string_equal(u, AZURITE "/ckpt/k?comp=block&blockid=QQ%3D%3D");
        free(u);
        assert_int_equal(az_url(AZURITE, "devstoreaccount1", "ckpt", NULL, "restype=container", "sv=1&sig=x", &u), 0);
        assert_string_equal(u, AZURITE "/ckpt?restype=container&sv=1&sig=x");
        free(u);
        assert_int_equal(az_url(AZURITE, "devstoreaccount1", "ckpt", "k", NULL, "sv=1&sig=x", &u), 0);
        assert_string_equal(u, AZURITE "/ckpt/k?sv=1&sig=x");
        free(u);
        assert_int_equal(az_endpoint_check("ftp://x"), -EINVAL);
        assert_int_equal(az_endpoint_check("http://u@x"), -EINVAL);
        assert_int_equal(az_endpoint_check("http://x/?a"), -EINVAL);
        assert_int_equal(az_endpoint_check("https://x:1/acct"), 0);
}

static void test_queries(void **state) {
        char *q, id[AZ_BLOCK_ID_SIZE];

        assert_int_equal(az_list_query("jobs/a b", NULL, 0, &q), 0);
        assert_string_equal(q, "restype=container&comp=list&prefix=jobs%2Fa%20b");
        free(q);
        assert_int_equal(az_list_query("", "2!88!MDAw", 3, &q), 0);
        assert_string_equal(q, "restype=container&comp=list&prefix=&marker=2%2188%21MDAw&maxresults=3");
        free(q);
        /* Independently: base64(b"block-000000"), base64(b"block-049999") */
        assert_int_equal(az_block_id(0, id), 0);
        assert_string_equal(id, "YmxvY2stMDAwMDAw");
        assert_int_equal(az_block_id(49999, id), 0);
        assert_string_equal(id, "YmxvY2stMDQ5OTk5");
        assert_int_equal(az_block_id(1000000, id), -EINVAL);
        assert_int_equal(az_block_query(id, &q), 0);
        assert_string_equal(q, "comp=block&blockid=YmxvY2stMDQ5OTk5");
        free(q);
        assert_int_equal(az_block_list_body(2, &q), 0);
        assert_string_equal(q, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>YmxvY2stMDAwMDAw</Latest>"
                               "<Latest>YmxvY2stMDAwMDAx</Latest></BlockList>");
        free(q);
        assert_int_equal(az_block_list_body(0, &q), -EINVAL);
        assert_int_equal(az_block_list_body(AZ_MAX_BLOCKS + 1, &q), -EINVAL);
}

/* The vector was computed independently with Python's hmac/hashlib/base64:
 *   sts = "PUT\n\n\n4\nCY9rzUYh03PK3k6DJie09g==\napplication/octet-stream\n\n\n\n*\n\n\n"
 *         "x-ms-blob-type:BlockBlob\nx-ms-date:Mon, 23 Nov 2026 16:00:00 GMT\nx-ms-meta-sha256:abc\n"
 *         "x-ms-version:2021-08-06\n/devstoreaccount1/devstoreaccount1/ckpt/pre/a%20b\n"
 *         "blockid:YmxvY2stMDAwMDAw\ncomp:block"
 *   base64(hmac.new(b64decode(DEV_KEY), sts, sha256).digest()) */
#define STS_EXPECTED                                                                                     \
        "PUT\n\n\n4\nCY9rzUYh03PK3k6DJie09g==\napplication/octet-stream\n\n\n\n*\n\n\n"                 \
        "x-ms-blob-type:BlockBlob\nx-ms-date:Mon, 23 Nov 2026 16:00:00 GMT\nx-ms-meta-sha256:abc\n"     \
        "x-ms-version:2021-08-06\n/devstoreaccount1/devstoreaccount1/ckpt/pre/a%20b\n"                   \
        "blockid:YmxvY2stMDAwMDAw\ncomp:block"

static void test_shared_key(void **state) {
        char *headers[] = {
                (char *) "X-MS-Version: 2021-08-06", /* any case, any order */
                (char *) "x-ms-date: Mon, 23 Nov 2026 16:00:00 GMT",
                (char *) "Content-Type: application/octet-stream",
                (char *) "Content-MD5: CY9rzUYh03PK3k6DJie09g==",
                (char *) "x-ms-meta-sha256:   abc  ",
                (char *) "If-None-Match: *",
                (char *) "x-ms-blob-type: BlockBlob",
                (char *) "Expect:",
                NULL,
        };
        char *sts, *sig, *auth;
        char md5[AZ_MD5_B64_SIZE];

        assert_int_equal(az_md5_base64("test", 4, md5), 0);
        assert_string_equal(md5, "CY9rzUYh03PK3k6DJie09g==");
        /* Query parameters sorted and decoded; the path stays encoded; account twice (path-style). */
        assert_int_equal(az_string_to_sign("PUT", "devstoreaccount1",
                                           AZURITE "/ckpt/pre/a%20b?comp=block&blockid=YmxvY2stMDAwMDAw", 4, headers,
                                           &sts),
                         0);
        assert_string_equal(sts, STS_EXPECTED);
        assert_int_equal(az_sign(DEV_KEY, sts, &sig), 0);
        assert_string_equal(sig, "a7ksjJlY+cM2lXGdJ0oo2i/YVZOwr1G0cha3Y71IWog=");
        free(sts), free(sig);
        assert_int_equal(az_authorization(DEV_KEY, "PUT", "devstoreaccount1",
                                          AZURITE "/ckpt/pre/a%20b?comp=block&blockid=YmxvY2stMDAwMDAw", 4, headers,
                                          &auth),
                         0);
        assert_string_equal(auth, "SharedKey devstoreaccount1:a7ksjJlY+cM2lXGdJ0oo2i/YVZOwr1G0cha3Y71IWog=");
        free(auth);

        /* Zero length: empty Content-Length; decoded query values; Azure's own host: path only. */
        char *h2[] = { (char *) "x-ms-version: 2021-08-06", NULL };
        assert_int_equal(az_string_to_sign("GET", "acct",
                                           "https://acct.blob.core.windows.net/ckpt?restype=container&comp=list"
                                           "&prefix=a%2Fb&Marker=x%21",
                                           0, h2, &sts),
                         0);
        assert_string_equal(sts, "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-version:2021-08-06\n/acct/ckpt\ncomp:list\nmarker:x!\n"
                                 "prefix:a/b\nrestype:container");
        free(sts);
        assert_int_equal(az_sign("not base64!", "x", &sig), -EINVAL);
        assert_int_equal(az_sign("QQ=", "x", &sig), -EINVAL);
}

static void test_sas(void **state) {
        char *s;

        assert_int_equal(az_sas_normalize("?sv=2019-12-12&sp=rl&sig=a%2Bb%3D", &s), 0);
        assert_string_equal(s, "sv=2019-12-12&sp=rl&sig=a%2Bb%3D");
        free(s);
        assert_int_equal(az_sas_normalize("sv=1&sp=r", &s), -EINVAL);
        assert_int_equal(az_sas_normalize("sv=1&sig=a b", &s), -EINVAL);
        assert_int_equal(az_sas_normalize("sv=1&sig=a\n", &s), -EINVAL);
        assert_int_equal(az_sas_normalize("", &s), -EINVAL);
}

static void test_base64_date(void **state) {
        void *d;
        size_t n;
        char *e, date[32];

        assert_int_equal(az_base64_decode("aGVsbG8=", &d, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(d, "hello", 5);
        free(d);
        assert_int_equal(az_base64_decode("aGVsbA==", &d, &n), 0);
        assert_int_equal(n, 4);
        free(d);
        assert_int_equal(az_base64_decode("aGVs bG8=", &d, &n), -EINVAL);
        assert_int_equal(az_base64_decode("", &d, &n), -EINVAL);
        assert_int_equal(az_base64_encode("hello", 5, &e), 0);
        assert_string_equal(e, "aGVsbG8=");
        free(e);
        assert_int_equal(az_format_date((usec_t) 1795449600 * USEC_PER_SEC, date), 0);
        assert_string_equal(date, "Mon, 23 Nov 2026 16:00:00 GMT");
}

static const char LIST_PAGE[] =
        "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?>"
        "<EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" ContainerName=\"ckpt\">"
        "<Prefix>pre/</Prefix><MaxResults>2</MaxResults><Blobs>"
        "<Blob><Name>pre/a &amp; b</Name><Properties><Creation-Time>Mon, 23 Nov 2026 15:00:00 GMT</Creation-Time>"
        "<Last-Modified>Mon, 23 Nov 2026 16:00:00 GMT</Last-Modified><Content-Length>11</Content-Length>"
        "<BlobType>BlockBlob</BlobType></Properties><Metadata/></Blob>"
        "<Blob><Name>pre/big</Name><Properties><Content-Length>10485883</Content-Length></Properties></Blob>"
        "</Blobs><NextMarker>2!88!MDAwMDIwIXByZS9i</NextMarker></EnumerationResults>";

static void test_parse_list(void **state) {
        AzListPage p = {};
        const char *last = "<?xml version=\"1.0\"?><EnumerationResults><Blobs/><NextMarker/></EnumerationResults>";

        assert_int_equal(az_parse_list(LIST_PAGE, sizeof(LIST_PAGE) - 1, &p), 0);
        assert_int_equal(p.n_blobs, 2);
        assert_string_equal(p.blobs[0].name, "pre/a & b");
        assert_int_equal(p.blobs[0].size, 11);
        assert_int_equal(p.blobs[0].modified, (usec_t) 1795449600 * USEC_PER_SEC);
        assert_string_equal(p.blobs[1].name, "pre/big");
        assert_int_equal(p.blobs[1].size, 10485883);
        assert_true(p.blobs[1].modified == USEC_INFINITY);
        assert_string_equal(p.next_marker, "2!88!MDAwMDIwIXByZS9i");
        az_list_page_done(&p);

        assert_int_equal(az_parse_list(last, strlen(last), &p), 0);
        assert_int_equal(p.n_blobs, 0);
        assert_null(p.next_marker);
        az_list_page_done(&p);

        /* A blob without a size, a wrong root, garbage. */
        const char *nosize = "<EnumerationResults><Blobs><Blob><Name>x</Name></Blob></Blobs></EnumerationResults>";
        assert_int_equal(az_parse_list(nosize, strlen(nosize), &p), -EBADMSG);
        const char *badsize = "<EnumerationResults><Blobs><Blob><Name>x</Name><Properties><Content-Length>-1"
                              "</Content-Length></Properties></Blob></Blobs></EnumerationResults>";
        assert_int_equal(az_parse_list(badsize, strlen(badsize), &p), -EBADMSG);
        assert_int_equal(az_parse_list("<ListBucketResult/>", 19, &p), -EBADMSG);
        assert_int_equal(az_parse_list("<Enumeration", 12, &p), -EBADMSG);
        assert_int_equal(az_parse_list("", 0, &p), -EBADMSG);
}

static void test_hostile_xml(void **state) {
        AzListPage p = {};
        char *code = NULL, *msg = NULL;
        const char *bomb = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;\">]>"
                           "<EnumerationResults><Blobs><Blob><Name>&b;</Name></Blob></Blobs></EnumerationResults>";
        const char *ext = "<!DOCTYPE x SYSTEM \"file:///etc/passwd\"><EnumerationResults/>";
        char *deep, *big, *longname;
        size_t n = 0;

        assert_int_equal(az_parse_list(bomb, strlen(bomb), &p), -EBADMSG);
        assert_int_equal(az_parse_list(ext, strlen(ext), &p), -EBADMSG);
        assert_int_equal(az_parse_error(bomb, strlen(bomb), &code, &msg), -EBADMSG);

        deep = malloc(64 * 1024);
        assert_non_null(deep);
        n = 0;
        for (unsigned i = 0; i < 100; i++)
                n += (size_t) sprintf(deep + n, "<a>");
        assert_int_equal(az_parse_list(deep, n, &p), -EBADMSG);
        free(deep);

        /* Over the size cap: refused before parsing. */
        big = calloc(1, AZ_XML_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', AZ_XML_MAX + 1);
        assert_int_equal(az_parse_list(big, AZ_XML_MAX + 1, &p), -EFBIG);
        free(big);

        /* A name longer than kept: -EFBIG, not a shortened (wrong) key. */
        longname = malloc(AZ_XML_TEXT_MAX + 256);
        assert_non_null(longname);
        n = (size_t) sprintf(longname, "<EnumerationResults><Blobs><Blob><Name>");
        memset(longname + n, 'k', AZ_XML_TEXT_MAX + 10);
        n += AZ_XML_TEXT_MAX + 10;
        n += (size_t) sprintf(longname + n, "</Name></Blob></Blobs></EnumerationResults>");
        assert_int_equal(az_parse_list(longname, n, &p), -EFBIG);
        free(longname);

        /* More blobs in a page than allowed. */
        size_t cap = (size_t) (AZ_LIST_PAGE_MAX + 1) * 128 + 100;
        char *many = malloc(cap);
        assert_non_null(many);
        n = (size_t) sprintf(many, "<EnumerationResults><Blobs>");
        for (unsigned i = 0; i <= AZ_LIST_PAGE_MAX; i++)
                n += (size_t) sprintf(many + n, "<Blob><Name>k%u</Name><Properties><Content-Length>1</Content-Length>"
                                                "</Properties></Blob>", i);
        n += (size_t) sprintf(many + n, "</Blobs></EnumerationResults>");
        assert_true(n < cap);
        assert_int_equal(az_parse_list(many, n, &p), -EFBIG);
        free(many);
}

static void test_errors(void **state) {
        char *code = NULL, *msg = NULL;
        const char *e = "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>BlobNotFound</Code>"
                        "<Message>The specified blob does not exist.\nRequestId:1</Message></Error>";
        AzListPage p = {};

        assert_int_equal(az_parse_error(e, strlen(e), &code, &msg), 0);
        assert_string_equal(code, "BlobNotFound");
        assert_string_equal(msg, "The specified blob does not exist.\nRequestId:1");
        free(code), free(msg);
        /* An <Error> where a listing was expected gives its errno. */
        assert_int_equal(az_parse_list(e, strlen(e), &p), -ENOENT);
        assert_int_equal(az_parse_error("<List/>", 7, &code, &msg), -EBADMSG);

        assert_int_equal(az_error_to_errno("BlobNotFound", 404), -ENOENT);
        assert_int_equal(az_error_to_errno("ContainerNotFound", 404), -ENOENT);
        assert_int_equal(az_error_to_errno("BlobAlreadyExists", 409), -EEXIST);
        assert_int_equal(az_error_to_errno("ConditionNotMet", 412), -EEXIST);
        assert_int_equal(az_error_to_errno("Md5Mismatch", 400), -EBADMSG);
        assert_int_equal(az_error_to_errno("InvalidMd5", 400), -EBADMSG);
        assert_int_equal(az_error_to_errno("AuthenticationFailed", 403), -EACCES);
        assert_int_equal(az_error_to_errno("AuthorizationFailure", 403), -EACCES);
        assert_int_equal(az_error_to_errno("InvalidRange", 416), -ERANGE);
        assert_int_equal(az_error_to_errno("ServerBusy", 503), -EAGAIN);
        assert_int_equal(az_error_to_errno("InternalError", 500), -EIO);
        assert_int_equal(az_error_to_errno("SomethingNew", 409), -EBUSY);
        assert_int_equal(az_error_to_errno(NULL, 404), -ENOENT);
        assert_int_equal(az_error_to_errno(NULL, 0), -EIO);
        assert_true(az_error_code_retryable("ServerBusy"));
        assert_true(az_error_code_retryable("InternalError"));
        assert_false(az_error_code_retryable("BlobNotFound"));
        assert_false(az_error_code_retryable(NULL));
        assert_int_equal(az_error_to_errno_message("InvalidOperation", "Provided contentMD5 doesn't match.", 400),
                         -EBADMSG);
        assert_int_equal(az_error_to_errno_message("InvalidOperation", "Something else", 400), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),        cmocka_unit_test(test_location),
                cmocka_unit_test(test_url),          cmocka_unit_test(test_queries),
                cmocka_unit_test(test_shared_key),   cmocka_unit_test(test_sas),
                cmocka_unit_test(test_base64_date),  cmocka_unit_test(test_parse_list),
                cmocka_unit_test(test_hostile_xml),  cmocka_unit_test(test_errors),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
