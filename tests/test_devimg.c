/*
 * Tests of the device-image parser and builder (worker/devimg.c): the fixtures parse and lay out
 * like a VFIO device fd; every kind of bad input is refused with its line number and reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <fcntl.h>

#include "base.h"
#include "wkr_test_util.h"

#define HEAD "vfio-device-image 1\ndevice flags=0x3\nregion 7 size=256 flags=3\n"

static void test_devimg_fixtures_parse(void **state)
{
	const char *names[] = {"edu.img", "e1000e.img", "nvme.img", "pcie_spec_sriov_ari_rebar.img",
			       "caps_every_kind.img"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		char path[512];
		struct wkr_image *img = NULL;
		struct vb_err err;
		int r;

		snprintf(path, sizeof(path), "%s/%s", VB_FIXTURES, names[i]);
		r = wkr_image_load(path, &img, &err);
		if (r < 0)
			fail_msg("%s: %s", names[i], err.msg);
		assert_true(wkr_image_info(img)->flags & VFIO_DEVICE_FLAGS_PCI);
		wkr_image_free(img);
	}
	(void)state;
}

static void test_devimg_build_lays_out_regions_like_vfio(void **state)
{
	struct wkr_image *img;
	struct vb_err err;
	const char *text = "# a comment\n\n" HEAD "name tiny_dev-1.0\n"
			   "region 0 size=0x1000 flags=0x7 mmap=0+0x800,0x800+0x800\n"
			   "irq 2 count=3 flags=1\n"
			   "config 0 34 12 # trailing comment\n"
			   "config 0xff aa\n"
			   "data 0 0x10 de ad\n";
	const struct wkr_devinfo *in;
	int fd;
	uint8_t b[2];

	assert_int_equal(wkr_image_parse(text, strlen(text), &img, &err), 0);
	in = wkr_image_info(img);
	assert_string_equal(in->name, "tiny_dev-1.0");
	assert_int_equal(in->regions[0].size, 0x1000);
	assert_int_equal(in->regions[0].offset, WKR_REGION_OFFSET(0));
	assert_int_equal(in->regions[0].nareas, 2);
	assert_int_equal(in->regions[0].areas[1].offset, 0x800);
	assert_int_equal(in->regions[7].offset, 7ull << 40);
	assert_int_equal(in->irqs[2].count, 3);
	assert_int_equal(wkr_image_build(img, &fd), 0);
	assert_int_equal(pread(fd, b, 2, (off_t)(7ull << 40)), 2);
	assert_int_equal(b[0], 0x34);
	assert_int_equal(b[1], 0x12);
	assert_int_equal(pread(fd, b, 1, (off_t)((7ull << 40) + 0xff)), 1);
	assert_int_equal(b[0], 0xaa);
	assert_int_equal(pread(fd, b, 2, 0x10), 2);
	assert_int_equal(b[0], 0xde);
	assert_int_equal(b[1], 0xad);
	/* The layout is sealed: the fd cannot grow. */
	assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_GROW);
	assert_true(ftruncate(fd, (off_t)(9ull << 40)) < 0);
	close(fd);
	wkr_image_free(img);
	(void)state;
}

/* Parses `text`, expects failure on `line` with `why` in the message, and *ret untouched. */
static void expect_bad(const char *text, unsigned line, const char *why)
{
	struct wkr_image *img = (struct wkr_image *)0x1;
	struct vb_err err;
	char prefix[32];
	int r;

	snprintf(prefix, sizeof(prefix), "line %u: ", line);
	r = wkr_image_parse(text, strlen(text), &img, &err);
	if (r != -EINVAL || err.code != r || strncmp(err.msg, prefix, strlen(prefix)) != 0 ||
	    !strstr(err.msg, why))
		fail_msg("for %s: got %d, '%s'; want '%s...%s'", text, r, err.msg, prefix, why);
	assert_ptr_equal(img, (struct wkr_image *)0x1);
}

static void test_devimg_header_errors_named(void **state)
{
	expect_bad("", 0, "empty image");
	expect_bad("# only a comment\n", 1, "empty image");
	expect_bad("device flags=3\n", 1, "expected 'vfio-device-image 1'");
	expect_bad("vfio-device-image 2\n", 1, "unsupported image version");
	expect_bad("vfio-device-image 1\nregion 7 size=256 flags=3\n", 2, "no 'device' line");
	expect_bad("vfio-device-image 1\ndevice flags=3\n", 2, "no 'region 7'");
	(void)state;
}

static void test_devimg_unknown_keyword_and_option_rejected(void **state)
{
	expect_bad(HEAD "frobnicate 1\n", 4, "unknown keyword 'frobnicate'");
	expect_bad(HEAD "region 0 size=16 flags=3 colour=red\n", 4, "unknown or repeated option");
	expect_bad(HEAD "region 0 size=16 size=32 flags=3\n", 4, "unknown or repeated option");
	expect_bad(HEAD "irq 0 count=1 flags=1 extra\n", 4, "unknown or repeated option");
	expect_bad("vfio-device-image 1\ndevice flags=3 speed=fast\n", 2, "unknown option");
	(void)state;
}

static void test_devimg_numbers_and_bytes_checked(void **state)
{
	expect_bad(HEAD "region 0 size=0x1g flags=3\n", 4, "not a number");
	expect_bad(HEAD "region 0 size=99999999999999999999999 flags=3\n", 4, "not a number");
	expect_bad(HEAD "region 0 size=-1 flags=3\n", 4, "not a number");
	expect_bad(HEAD "region 0 size=0x20000000000 flags=3\n", 4, "larger than");
	expect_bad(HEAD "config 0 1\n", 4, "two-digit hex byte");
	expect_bad(HEAD "config 0 0x12\n", 4, "two-digit hex byte");
	expect_bad(HEAD "config 0 zz\n", 4, "two-digit hex byte");
	expect_bad(HEAD "config 0\n", 4, "1 to 16 bytes");
	expect_bad(HEAD "config 0 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10\n", 4,
		   "1 to 16 bytes");
	(void)state;
}

static void test_devimg_ranges_and_duplicates_checked(void **state)
{
	expect_bad(HEAD "region 9 size=16 flags=3\n", 4, "region index");
	expect_bad(HEAD "region 7 size=256 flags=3\n", 4, "given twice");
	expect_bad("vfio-device-image 1\ndevice flags=3\nregion 7 size=512 flags=3\n", 3,
		   "256 or 4096");
	expect_bad(HEAD "region 0 size=0x1000 flags=0x10\n", 4, "unknown bits");
	expect_bad(HEAD "region 0 size=0x1000 flags=3 mmap=0+0x1000\n", 4, "without");
	expect_bad(HEAD "region 0 size=0x1000 flags=7 mmap=0x800+0x1000\n", 4, "past the region");
	expect_bad(HEAD "region 0 size=0x1000 flags=7 mmap=0x800\n", 4, "<offset>+<size>");
	expect_bad(HEAD "irq 5 count=1 flags=1\n", 4, "irq index");
	expect_bad(HEAD "irq 1 count=33 flags=1\n", 4, "larger than");
	expect_bad(HEAD "irq 0 count=1 flags=1\nirq 0 count=1 flags=1\n", 5, "given twice");
	expect_bad(HEAD "name a\nname b\n", 5, "second name");
	expect_bad(HEAD "name bad/name\n", 4, "letters, digits");
	expect_bad("vfio-device-image 1\ndevice flags=0x4\n", 2, "unknown or non-PCI");
	expect_bad("vfio-device-image 1\ndevice flags=0x1\n", 2, "lack VFIO_DEVICE_FLAGS_PCI");
	expect_bad("vfio-device-image 1\ndevice flags=3 bdf=0000:00:20.0\n", 2, "bdf");
	expect_bad("vfio-device-image 1\ndevice flags=3 bdf=0:0:1.0\n", 2, "bdf");
	(void)state;
}

static void test_devimg_late_bounds_name_offending_line(void **state)
{
	/* The config line comes before region 7 says the space is 256 bytes. */
	expect_bad("vfio-device-image 1\ndevice flags=3\nconfig 0x100 01\n"
		   "region 7 size=256 flags=3\n",
		   3, "past the 256-byte region 7");
	expect_bad(HEAD "data 1 0 00\n", 4, "lacks");
	expect_bad(HEAD "region 0 size=16 flags=3\ndata 0 15 00 01\n", 5, "past the end");
	expect_bad(HEAD "data 7 0 00\n", 4, "not 7");
	expect_bad(HEAD "data 0 0x1g 00\n", 4, "not a number");
	(void)state;
}

static void test_devimg_binary_and_long_lines_rejected(void **state)
{
	char text[8192];
	struct wkr_image *img = NULL;
	struct vb_err err;
	int n;

	memcpy(text, HEAD "name x\0y\n", sizeof(HEAD "name x\0y\n"));
	assert_int_equal(wkr_image_parse(text, sizeof(HEAD "name x\0y\n") - 1, &img, &err),
			 -EINVAL);
	assert_string_equal(err.msg, "line 4: NUL byte in the text");
	n = snprintf(text, sizeof(text), "%s# ", HEAD);
	memset(text + n, 'x', 5000);
	text[n + 5000] = 0;
	assert_int_equal(wkr_image_parse(text, strlen(text), &img, &err), -EINVAL);
	assert_int_equal(strncmp(err.msg, "line 4: ", 8), 0);
	assert_non_null(strstr(err.msg, "longer than"));
	assert_null(img);
	assert_true(wkr_image_load("/nonexistent/image", &img, &err) == -ENOENT);
	assert_true(wkr_image_load("/", &img, &err) < 0);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_devimg_fixtures_parse),
	    cmocka_unit_test(test_devimg_build_lays_out_regions_like_vfio),
	    cmocka_unit_test(test_devimg_header_errors_named),
	    cmocka_unit_test(test_devimg_unknown_keyword_and_option_rejected),
	    cmocka_unit_test(test_devimg_numbers_and_bytes_checked),
	    cmocka_unit_test(test_devimg_ranges_and_duplicates_checked),
	    cmocka_unit_test(test_devimg_late_bounds_name_offending_line),
	    cmocka_unit_test(test_devimg_binary_and_long_lines_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
