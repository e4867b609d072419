/* SPDX-License-Identifier: MIT */
#include "unit-helpers.h"

#include "s3-request.h"

static void test_bucket_names(void **state) {
        assert_true(s3_bucket_name_is_valid("ckpt"));
        assert_true(s3_bucket_name_is_valid("my-bucket.v2"));
        assert_true(s3_bucket_name_is_valid("123"));
        assert_false(s3_bucket_name_is_valid("ab"));
        assert_false(s3_bucket_name_is_valid("Upper"));
        assert_false(s3_bucket_name_is_valid("-start"));
        assert_false(s3_bucket_name_is_valid("end-"));
        assert_false(s3_bucket_name_is_valid("a..b"));
        assert_false(s3_bucket_name_is_valid("192.168.1.1"));
        assert_false(s3_bucket_name_is_valid("under_score"));
        assert_false(s3_bucket_name_is_valid("a234567890123456789012345678901234567890123456789012345678901234"));
        assert_false(s3_bucket_name_is_valid(""));
}

static void test_location(void **state) {
        char *b = NULL, *p = NULL;

        assert_int_equal(s3_location_parse("ckpt", &b, &p), 0);
        assert_string_equal(b, "ckpt");
        assert_string_equal(p, "");
        free(b), free(p);
        assert_int_equal(s3_location_parse("ckpt/jobs/a", &b, &p), 0);
        assert_string_equal(b, "ckpt");
        assert_string_equal(p, "jobs/a/");
        free(b), free(p);
        assert_int_equal(s3_location_parse("ckpt/jobs/", &b, &p), 0);
        assert_string_equal(p, "jobs/");
        free(b), free(p);
        b = p = NULL;
        assert_int_equal(s3_location_parse("Bad/x", &b, &p), -EINVAL);
        assert_int_equal(s3_location_parse("ckpt/a//b", &b, &p), -EINVAL);
        assert_int_equal(s3_location_parse("ckpt/../b", &b, &p), -EINVAL);
        assert_int_equal(s3_location_parse("ckpt//", &b, &p), -EINVAL);
        assert_null(b);
        assert_null(p);
}

static void test_urls(void **state) {
        char *u = NULL;

        assert_int_equal(s3_url("http://127.0.0.1:7480", "us-east-1", "ckpt", "a/b c+d%é~.bin", NULL, &u), 0);
        assert_string_equal(u, "http://127.0.0.1:7480/ckpt/a/b%20c%2Bd%25%C3%A9~.bin");
        free(u);
        assert_int_equal(s3_url("https://s3.example.com/", "x", "ckpt", "k", "uploads=", &u), 0);
        assert_string_equal(u, "https://s3.example.com/ckpt/k?uploads=");
        free(u);
        assert_int_equal(s3_url(NULL, "eu-west-1", "ckpt", "k/1", NULL, &u), 0);
        assert_string_equal(u, "https://ckpt.s3.eu-west-1.amazonaws.com/k/1");
        free(u);
        assert_int_equal(s3_url(NULL, "eu-west-1", "ckpt", NULL, "list-type=2&prefix=", &u), 0);
        assert_string_equal(u, "https://ckpt.s3.eu-west-1.amazonaws.com/?list-type=2&prefix=");
        free(u);
        u = NULL;
        assert_int_equal(s3_url("ftp://x", "r", "ckpt", "k", NULL, &u), -EINVAL);
        assert_int_equal(s3_url("http://x/path", "r", "ckpt", "k", NULL, &u), -EINVAL);
        assert_int_equal(s3_url("http://user@x", "r", "ckpt", "k", NULL, &u), -EINVAL);
        assert_int_equal(s3_url(NULL, "bad/region", "ckpt", "k", NULL, &u), -EINVAL);
        assert_null(u);
}

static void test_queries(void **state) {
        char *q;

        assert_int_equal(s3_list_query("jobs/a b/", NULL, 0, &q), 0);
        assert_string_equal(q, "list-type=2&prefix=jobs%2Fa%20b%2F");
        free(q);
        assert_int_equal(s3_list_query("p/", "1/x+y=", 7, &q), 0);
        assert_string_equal(q, "continuation-token=1%2Fx%2By%3D&list-type=2&max-keys=7&prefix=p%2F");
        free(q);
        assert_int_equal(s3_part_query(12, "2~abc/+=", &q), 0);
        assert_string_equal(q, "partNumber=12&uploadId=2~abc%2F%2B%3D");
        free(q);
        assert_int_equal(s3_upload_id_query("u1", &q), 0);
        assert_string_equal(q, "uploadId=u1");
        free(q);
}

static void test_sha256(void **state) {
        char h[65];

        assert_int_equal(s3_payload_sha256(NULL, 0, h), 0);
        assert_string_equal(h, S3_EMPTY_SHA256);
        assert_int_equal(s3_payload_sha256("abc", 3, h), 0);
        assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_complete_body(void **state) {
        char *etags[] = { (char *) "\"a1\"", (char *) "\"b<2&\"" };
        char *b;

        assert_int_equal(s3_complete_body(etags, 2, &b), 0);
        assert_string_equal(b, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                               "<Part><PartNumber>1</PartNumber><ETag>&quot;a1&quot;</ETag></Part>"
                               "<Part><PartNumber>2</PartNumber><ETag>&quot;b&lt;2&amp;&quot;</ETag></Part>"
                               "</CompleteMultipartUpload>");
        free(b);
        assert_int_equal(s3_complete_body(etags, 0, &b), -EINVAL);
}

#define LIST1                                                                                          \
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                 \
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"                         \
        "<Name>ckpt</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"               \
        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok/1=</NextContinuationToken>\n"        \
        "  <Contents><Key>p/a&amp;b</Key><LastModified>2024-05-06T07:08:09.123Z</LastModified>"        \
        "<ETag>&quot;x&quot;</ETag><Size>12345678901</Size><StorageClass>STANDARD</StorageClass></Contents>\n" \
        "  <Contents><Key>p/c</Key><Size>0</Size><Owner><ID>o</ID></Owner></Contents>"                 \
        "</ListBucketResult>"

static void test_parse_list(void **state) {
        S3ListPage p = {};

        assert_int_equal(s3_parse_list(LIST1, strlen(LIST1), &p), 0);
        assert_int_equal(p.n_objects, 2);
        assert_true(p.truncated);
        assert_string_equal(p.next_token, "tok/1=");
        assert_string_equal(p.objects[0].key, "p/a&b");
        assert_true(p.objects[0].size == 12345678901ULL);
        assert_true(p.objects[0].modified != USEC_INFINITY);
        assert_string_equal(p.objects[1].key, "p/c");
        assert_true(p.objects[1].size == 0);
        assert_true(p.objects[1].modified == USEC_INFINITY);
        s3_list_page_done(&p);

        const char *empty = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_int_equal(s3_parse_list(empty, strlen(empty), &p), 0);
        assert_int_equal(p.n_objects, 0);
        assert_false(p.truncated);
        s3_list_page_done(&p);

        const char *notok = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert_int_equal(s3_parse_list(notok, strlen(notok), &p), -EBADMSG);
        const char *nokey = "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>";
        assert_int_equal(s3_parse_list(nokey, strlen(nokey), &p), -EBADMSG);
        const char *badsize = "<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>";
        assert_int_equal(s3_parse_list(badsize, strlen(badsize), &p), -EBADMSG);
        const char *other = "<Foo/>";
        assert_int_equal(s3_parse_list(other, strlen(other), &p), -EBADMSG);
        /* Truncated document: only part of LIST1. */
        assert_int_equal(s3_parse_list(LIST1, 200, &p), -EBADMSG);
        const char *err = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
        assert_int_equal(s3_parse_list(err, strlen(err), &p), -EACCES);
        assert_null(p.objects);
}

static void test_parse_multipart(void **state) {
        const char *init = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key>"
                           "<UploadId>2~Xyz_abc</UploadId></InitiateMultipartUploadResult>";
        const char *noid = "<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>";
        const char *ok = "<CompleteMultipartUploadResult><Location>x</Location><ETag>\"e-2\"</ETag>"
                         "</CompleteMultipartUploadResult>";
        const char *err200 = "<?xml version=\"1.0\"?>\n<Error><Code>InternalError</Code><Message>We encountered "
                             "an internal error.</Message></Error>";
        const char *bad = "<Error><Code>InvalidPart</Code></Error>";
        char *id = NULL;

        assert_int_equal(s3_parse_initiate(init, strlen(init), &id), 0);
        assert_string_equal(id, "2~Xyz_abc");
        free(id);
        id = NULL;
        assert_int_equal(s3_parse_initiate(noid, strlen(noid), &id), -EBADMSG);
        assert_null(id);
        assert_int_equal(s3_parse_complete(ok, strlen(ok)), 0);
        assert_int_equal(s3_parse_complete(err200, strlen(err200)), -EIO);
        assert_true(s3_error_code_retryable("InternalError"));
        assert_int_equal(s3_parse_complete(bad, strlen(bad)), -EINVAL);
        assert_int_equal(s3_parse_complete("", 0), -EBADMSG);
}

static void test_parse_error(void **state) {
        const char *e = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>"
                        "<Message>The specified key does not exist.</Message><Key>k</Key><RequestId>r</RequestId></Error>";
        char *code = NULL, *msg = NULL;

        assert_int_equal(s3_parse_error(e, strlen(e), &code, &msg), 0);
        assert_string_equal(code, "NoSuchKey");
        assert_string_equal(msg, "The specified key does not exist.");
        free(code), free(msg);
        code = msg = NULL;
        assert_int_equal(s3_parse_error("<Foo/>", 6, &code, &msg), -EBADMSG);
        assert_int_equal(s3_parse_error("junk", 4, &code, &msg), -EBADMSG);
        assert_null(code);
}

static void test_error_map(void **state) {
        assert_int_equal(s3_error_to_errno("NoSuchKey", 404), -ENOENT);
        assert_int_equal(s3_error_to_errno("PreconditionFailed", 412), -EEXIST);
        assert_int_equal(s3_error_to_errno("BadDigest", 400), -EBADMSG);
        assert_int_equal(s3_error_to_errno("XAmzContentSHA256Mismatch", 400), -EBADMSG);
        assert_int_equal(s3_error_to_errno("AccessDenied", 403), -EACCES);
        assert_int_equal(s3_error_to_errno("SignatureDoesNotMatch", 403), -EACCES);
        assert_int_equal(s3_error_to_errno("InvalidAccessKeyId", 403), -EACCES);
        assert_int_equal(s3_error_to_errno("SlowDown", 503), -EAGAIN);
        assert_int_equal(s3_error_to_errno("Whatever", 404), -ENOENT);
        assert_int_equal(s3_error_to_errno(NULL, 503), -EIO);
        assert_int_equal(s3_error_to_errno(NULL, 0), -EIO);
        assert_true(s3_error_code_retryable("SlowDown"));
        assert_true(s3_error_code_retryable("ServiceUnavailable"));
        assert_false(s3_error_code_retryable("AccessDenied"));
        assert_false(s3_error_code_retryable(NULL));
}

static void test_hostile_xml(void **state) {
        const char *laughs = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
                             "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><ListBucketResult><Contents>"
                             "<Key>&b;</Key><Size>1</Size></Contents></ListBucketResult>";
        const char *ext = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"
                          "<Error><Code>&e;</Code></Error>";
        S3ListPage p = {};
        char *code = NULL, *msg = NULL, *big, *deep;
        size_t n;

        assert_int_equal(s3_parse_list(laughs, strlen(laughs), &p), -EBADMSG);
        assert_int_equal(s3_parse_error(ext, strlen(ext), &code, &msg), -EBADMSG);

        /* Deep nesting. */
        n = 100000;
        deep = malloc(n * 3 + 1);
        for (size_t i = 0; i < n; i++)
                memcpy(deep + i * 3, "<a>", 3);
        deep[n * 3] = 0;
        assert_int_equal(s3_parse_list(deep, n * 3, &p), -EBADMSG);
        free(deep);

        /* A key longer than the text cap. */
        n = S3_XML_TEXT_MAX * 2;
        big = malloc(n + 200);
        strcpy(big, "<ListBucketResult><Contents><Key>");
        memset(big + strlen(big), 'k', n);
        strcpy(big + 33 + n, "</Key><Size>1</Size></Contents></ListBucketResult>");
        assert_int_equal(s3_parse_list(big, strlen(big), &p), -EFBIG);
        free(big);

        /* Too large a document, refused before parsing. */
        assert_int_equal(s3_parse_list("x", (size_t) S3_XML_MAX + 1, &p), -EFBIG);

        /* Too many objects in one page. */
        {
                const char *item = "<Contents><Key>k</Key><Size>1</Size></Contents>";
                size_t il = strlen(item), count = S3_LIST_PAGE_MAX + 1, off;
                char *doc = malloc(64 + il * count);

                off = (size_t) sprintf(doc, "<ListBucketResult>");
                for (size_t i = 0; i < count; i++, off += il)
                        memcpy(doc + off, item, il);
                off += (size_t) sprintf(doc + off, "</ListBucketResult>");
                assert_int_equal(s3_parse_list(doc, off, &p), -EFBIG);
                free(doc);
        }

        /* Binary garbage and NUL bytes never crash. */
        {
                char junk[4096];
                for (size_t i = 0; i < sizeof(junk); i++)
                        junk[i] = (char) (i * 131 + 7);
                assert_true(s3_parse_list(junk, sizeof(junk), &p) < 0);
                assert_true(s3_parse_complete("<CompleteMultipartUploadResult>\0</x>", 36) < 0);
        }
        assert_null(p.objects);
        assert_null(code);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bucket_names),
                cmocka_unit_test(test_location),
                cmocka_unit_test(test_urls),
                cmocka_unit_test(test_queries),
                cmocka_unit_test(test_sha256),
                cmocka_unit_test(test_complete_body),
                cmocka_unit_test(test_parse_list),
                cmocka_unit_test(test_parse_multipart),
                cmocka_unit_test(test_parse_error),
                cmocka_unit_test(test_error_map),
                cmocka_unit_test(test_hostile_xml),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
