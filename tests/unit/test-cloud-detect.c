/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <sys/stat.h>

#include "unit-helpers.h"

#include "cloud-detect.h"

static char dir[] = "/tmp/test-cloud-detect-XXXXXX";

static void put(const char *name, const char *value) {
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        if (!value) {
                (void) unlink(path);
                return;
        }
        f = fopen(path, "we");
        assert_non_null(f);
        fputs(value, f);
        fclose(f);
}

static void clear(void) {
        static const char *const names[] = { "sys_vendor", "product_name", "chassis_asset_tag", "bios_vendor",
                                             "product_uuid" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                put(names[i], NULL);
}

static int setup(void **state) {
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        clear();
        return rmdir(dir);
}

static void test_clouds(void **state) {
        static const struct {
                const char *file, *value;
                CloudProvider expect;
        } cases[] = {
                { "sys_vendor", "Amazon EC2\n", CLOUD_PROVIDER_AWS },
                { "bios_vendor", "Amazon EC2\n", CLOUD_PROVIDER_AWS },
                { "product_uuid", "EC2E1916-9099-7CAF-FD21-012345ABCDEF\n", CLOUD_PROVIDER_AWS },
                { "product_name", "Google Compute Engine\n", CLOUD_PROVIDER_GCE },
                { "sys_vendor", "Google\n", CLOUD_PROVIDER_GCE },
                { "chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77\n", CLOUD_PROVIDER_AZURE },
                { "sys_vendor", "Alibaba Cloud\n", CLOUD_PROVIDER_ALIBABA },
                { "product_name", "Alibaba Cloud ECS\n", CLOUD_PROVIDER_ALIBABA },
                { "sys_vendor", "QEMU\n", CLOUD_PROVIDER_NONE },
                /* Hyper-V alone is not Azure: only the asset tag says so */
                { "sys_vendor", "Microsoft Corporation\n", CLOUD_PROVIDER_NONE },
                { "product_name", "", CLOUD_PROVIDER_NONE },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                clear();
                put(cases[i].file, cases[i].value);
                assert_int_equal(cloud_detect(dir), cases[i].expect);
        }
}

static void test_missing_dir_and_resolve(void **state) {
        assert_int_equal(cloud_detect("/nonexistent-dmi-dir"), CLOUD_PROVIDER_NONE);
        clear();
        put("sys_vendor", "Amazon EC2");
        assert_int_equal(cloud_resolve_provider(CLOUD_PROVIDER_AUTO, dir), CLOUD_PROVIDER_AWS);
        assert_int_equal(cloud_resolve_provider(CLOUD_PROVIDER_GCE, dir), CLOUD_PROVIDER_GCE);
        assert_int_equal(cloud_resolve_provider(CLOUD_PROVIDER_NONE, dir), CLOUD_PROVIDER_NONE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_clouds),
                cmocka_unit_test(test_missing_dir_and_resolve),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
