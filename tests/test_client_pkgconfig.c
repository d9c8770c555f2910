/*
 * test_client_pkgconfig: libvfiobroker as a consumer sees it. Installs the build's "vfiobroker"
 * component into a temporary prefix with `cmake --install`, then builds and runs a small program
 * against it through pkg-config and through the CMake package, and checks what the shared
 * library exports.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char prefix[] = "/tmp/vfb-install-XXXXXX";
static char log_path[256];

/* A consumer of the installed header and library: what a VMM author would write first. */
static const char program[] =
    "#include <errno.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "#include <vfiobroker/client.h>\n"
    "int main(void)\n"
    "{\n"
    "	struct vfb_dev *dev = NULL;\n"
    "	char bdf[VFB_BDF_MAX];\n"
    "	if (vfb_bdf_normalize(\"00:03.0\", bdf, sizeof(bdf)) != 0 ||\n"
    "	    strcmp(bdf, \"0000:00:03.0\") != 0)\n"
    "		return 10;\n"
    "	if (vfb_dev_connect(\"/nonexistent/worker.sock\", \"pc\", 0, &dev) != -ENOENT)\n"
    "		return 11;\n"
    "	printf(\"libvfiobroker %s\\n\", vfb_version());\n"
    "	return 0;\n"
    "}\n";

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs a shell command with its output in log_path; prints the log when it fails. */
static int run(const char *fmt, ...)
{
	char cmd[4096], full[4400];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	snprintf(full, sizeof(full), "(%s) >'%s' 2>&1", cmd, log_path);
	st = system(full);
	if (st != 0) {
		char line[512];
		FILE *f = fopen(log_path, "r");

		print_message("# command failed (%d): %s\n", st, cmd);
		while (f && fgets(line, sizeof(line), f))
			print_message("#   %s", line);
		if (f)
			fclose(f);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) == 0 ? 0 : -errno;
}

static int install_setup(void **state)
{
	if (!mkdtemp(prefix))
		return -1;
	snprintf(log_path, sizeof(log_path), "%s.log", prefix);
	return run("'%s' --install '%s' --prefix '%s' --component vfiobroker", VB_CMAKE,
		   VB_BUILD_DIR, prefix);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(p);
}

static int install_teardown(void **state)
{
	nftw(prefix, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	unlink(log_path);
	return 0;
}

static void test_client_pkgconfig_build(void **state)
{
	char src[300], bin[300];
	const char *out;

	snprintf(src, sizeof(src), "%s/consumer.c", prefix);
	snprintf(bin, sizeof(bin), "%s/consumer", prefix);
	assert_int_equal(write_file(src, program), 0);
	assert_int_equal(run("PKG_CONFIG_PATH='%s/%s/pkgconfig' pkg-config --exists --print-errors "
			     "libvfiobroker",
			     prefix, VB_LIBDIR),
			 0);
	assert_int_equal(run("PKG_CONFIG_PATH='%s/%s/pkgconfig'; export PKG_CONFIG_PATH; "
			     "'%s' %s -o '%s' '%s' $(pkg-config --cflags --libs libvfiobroker)",
			     prefix, VB_LIBDIR, VB_CC, VB_EXTRA_CFLAGS, bin, src),
			 0);
	assert_int_equal(run("LD_LIBRARY_PATH='%s/%s' '%s'", prefix, VB_LIBDIR, bin), 0);
	out = slurp(log_path);
	assert_non_null(out);
	assert_non_null(strstr(out, "libvfiobroker " VB_VERSION));
	/* The program runs against the installed library, not the build tree's. */
	assert_int_equal(
	    run("LD_LIBRARY_PATH='%s/%s' ldd '%s' | grep -q '%s/%s/libvfiobroker.so.0'", prefix,
		VB_LIBDIR, bin, prefix, VB_LIBDIR),
	    0);
}

static void test_client_cmake_package_build(void **state)
{
	char dir[300], path[340];

	snprintf(dir, sizeof(dir), "%s/cmake-consumer", prefix);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(path, sizeof(path), "%s/consumer.c", dir);
	assert_int_equal(write_file(path, program), 0);
	snprintf(path, sizeof(path), "%s/CMakeLists.txt", dir);
	assert_int_equal(write_file(path,
				    "cmake_minimum_required(VERSION 3.18)\n"
				    "project(consumer C)\n"
				    "find_package(vfiobroker " VB_VERSION " REQUIRED)\n"
				    "add_executable(consumer consumer.c)\n"
				    "target_link_libraries(consumer vfiobroker::vfiobroker)\n"),
			 0);
	assert_int_equal(run("'%s' -S '%s' -B '%s/b' -DCMAKE_PREFIX_PATH='%s' "
			     "-DCMAKE_C_COMPILER='%s' -DCMAKE_C_FLAGS='%s' "
			     "&& '%s' --build '%s/b'",
			     VB_CMAKE, dir, dir, prefix, VB_CC, VB_EXTRA_CFLAGS, VB_CMAKE, dir),
			 0);
	assert_int_equal(run("'%s/b/consumer'", dir), 0);
	assert_non_null(strstr(slurp(log_path), "libvfiobroker " VB_VERSION));
}

static void test_client_so_exports_only_vfb_symbols(void **state)
{
	char line[512];
	const char *out;
	size_t nvfb = 0;
	FILE *f;

	assert_int_equal(run("nm -D --defined-only '%s/%s/libvfiobroker.so'", prefix, VB_LIBDIR),
			 0);
	f = fopen(log_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char addr[64], type[8], name[256];

		if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
			continue;
		if (strcmp(type, "A") == 0) /* the version node, VFIOBROKER_0 */
			continue;
		if (strncmp(name, "vfb_", 4) != 0)
			print_message("# exported: %s", line);
		assert_int_equal(strncmp(name, "vfb_", 4), 0);
		assert_int_not_equal(strncmp(name, "vfb__", 5), 0); /* internal names stay in */
		nvfb++;
	}
	fclose(f);
	assert_true(nvfb >= 30);
	assert_int_equal(run("readelf -d '%s/%s/libvfiobroker.so'", prefix, VB_LIBDIR), 0);
	out = slurp(log_path);
	assert_non_null(strstr(out, "Library soname: [libvfiobroker.so.0]"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_pkgconfig_build),
	    cmocka_unit_test(test_client_cmake_package_build),
	    cmocka_unit_test(test_client_so_exports_only_vfb_symbols),
	};

	return cmocka_run_group_tests(tests, install_setup, install_teardown);
}
