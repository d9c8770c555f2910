/*
 * test_config: vfio-brokerd's configuration file: every rejection names the file and the line,
 * good files give the values they say, and the AddDevice allowlist check.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

/* A valid [worker] section, so that each case changes one thing only. */
#define WORKER_OK "[worker]\nuid_range = 61000-61999\n"

struct cfg_file {
	char path[64];
	struct vb_err err;
	struct brk_config *c;
};

static int load_text(struct cfg_file *f, const char *text)
{
	int fd, r;

	snprintf(f->path, sizeof(f->path), "/tmp/test_config.XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	f->c = NULL;
	f->err = (struct vb_err){0};
	r = brk_config_load(f->path, &f->c, &f->err);
	unlink(f->path);
	return r;
}

/* The message starts with "FILE:LINE: " and contains `what`. */
static void assert_err_at(const struct cfg_file *f, unsigned line, const char *what)
{
	char prefix[96];

	snprintf(prefix, sizeof(prefix), "%s:%u: ", f->path, line);
	if (strncmp(f->err.msg, prefix, strlen(prefix)) != 0 || !strstr(f->err.msg, what))
		fail_msg("expected '%s...%s', got '%s'", prefix, what, f->err.msg);
}

static void test_deploy_config_rejects_unknown_key(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "[broker]\nadmin_uid = 0\nadmin_uuid = 0\n" WORKER_OK),
			 -EINVAL);
	assert_null(f.c);
	assert_err_at(&f, 3, "unknown key 'admin_uuid' in [broker]");
}

static void test_deploy_config_rejects_bad_value(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, WORKER_OK "seccomp = kill\nheartbeat_interval_ms = 1s\n"),
			 -EINVAL);
	assert_null(f.c);
	assert_err_at(&f, 4, "heartbeat_interval_ms: '1s' is not an unsigned number");

	assert_int_equal(
	    load_text(&f, "[devices]\nallow = 1234:11e8\nallow_bind = maybe\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 3, "allow_bind: 'maybe' is not yes or no");

	assert_int_equal(load_text(&f, WORKER_OK "restart = always\n"), -EINVAL);
	assert_err_at(&f, 3, "restart: 'always' is not never|on-failure");
}

static void test_config_protocol_default_native_and_choices(void **state)
{
	struct cfg_file f;
	const char *names[] = {"native", "vfio-user", "both"};

	assert_int_equal(load_text(&f, WORKER_OK), 0);
	assert_int_equal(f.c->protocols, BRK_PROTO_NATIVE);
	brk_config_free(f.c);
	for (uint32_t i = 0; i < 3; i++) {
		char text[256];

		snprintf(text, sizeof(text),
			 "[devices]\nallow = 1234:11e8\nprotocol = %s\n" WORKER_OK, names[i]);
		assert_int_equal(load_text(&f, text), 0);
		assert_int_equal(f.c->protocols, i + 1);
		assert_string_equal(brk_proto_name(f.c->protocols), names[i]);
		brk_config_free(f.c);
	}
	assert_int_equal(
	    load_text(&f, "[devices]\nallow = 1234:11e8\nprotocol = vfio_user\n" WORKER_OK),
	    -EINVAL);
	assert_err_at(&f, 3, "protocol: 'vfio_user' is not native|vfio-user|both");
}

static void test_config_allow_short_address_matches_canonical(void **state)
{
	struct cfg_file f;
	struct vb_err err;

	/* What an operator types (upper case, no domain) is kept in the canonical form. */
	assert_int_equal(load_text(&f, "[devices]\nallow = 00:1F.7\n" WORKER_OK), 0);
	assert_string_equal(f.c->allow[0].bdf, "0000:00:1f.7");
	assert_int_equal(brk_config_check_device(f.c, "0000:00:1f.7", 0x8086, 0x10d3, &err), 0);
	brk_config_free(f.c);
	/* A domain beyond 16 bits has no canonical 12-character name: refused at load. */
	assert_int_equal(load_text(&f, "[devices]\nallow = 10000:00:01.0\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 2, "allow: '10000:00:01.0' is neither a PCI address");
}

static void test_deploy_config_rejects_device_not_in_allowlist(void **state)
{
	struct cfg_file f;
	struct vb_err err;

	assert_int_equal(load_text(&f,
				   "[devices]\n# edu\nallow = 1234:11e8\n\nallow = 0000:00:04.0\n"
				   "allow_bind = no\n" WORKER_OK),
			 0);
	/* Neither the address nor the ids are listed: refused, naming both allow lines. */
	assert_int_equal(brk_config_check_device(f.c, "0000:00:05.0", 0x8086, 0x10d3, &err),
			 -EPERM);
	assert_non_null(strstr(err.msg, "0000:00:05.0 [8086:10d3] is not in the allowlist"));
	assert_non_null(strstr(err.msg, f.path));
	assert_non_null(strstr(err.msg, "line 3, 5)"));
	/* Allowed by id, and by address whatever its ids are. */
	assert_int_equal(brk_config_check_device(f.c, "0000:00:07.0", 0x1234, 0x11e8, &err), 0);
	assert_int_equal(brk_config_check_device(f.c, "0000:00:04.0", 0x8086, 0x10d3, &err), 0);
	brk_config_free(f.c);
}

static void test_deploy_config_rejects_unreadable_file(void **state)
{
	char dir[] = "/tmp/test_config_dir.XXXXXX", expect[96];
	struct vb_err err;
	struct brk_config *c = NULL;

	/* A directory opens but cannot be read: the first line cannot be read. Root can read files
	 * of any mode, so this is the unreadable file that fails the same for every user. */
	assert_non_null(mkdtemp(dir));
	assert_int_equal(brk_config_load(dir, &c, &err), -EISDIR);
	assert_null(c);
	snprintf(expect, sizeof(expect), "%s:1: cannot read: ", dir);
	assert_non_null(strstr(err.msg, expect));
	rmdir(dir);

	assert_int_equal(brk_config_load(dir, &c, &err), -ENOENT);
	snprintf(expect, sizeof(expect), "%s: cannot open: ", dir);
	assert_non_null(strstr(err.msg, expect));
	assert_null(c);
}

static void test_deploy_config_rejects_limits_out_of_range(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "[limits]\nmax_dma_mappings = 65536\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 2, "max_dma_mappings: 65536 out of range (1..65535)");

	assert_int_equal(load_text(&f, "[limits]\n\nmax_dma_mappings = 0\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 3, "max_dma_mappings: 0 out of range");

	assert_int_equal(load_text(&f, "[limits]\nmax_pinned_bytes = 5000T\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 2, "max_pinned_bytes: 5000T out of range");

	/* 2^64 does not fit: reported as out of range, not wrapped. */
	assert_int_equal(
	    load_text(&f, "[limits]\nmax_pinned_bytes = 18446744073709551616\n" WORKER_OK),
	    -EINVAL);
	assert_err_at(&f, 2, "out of range");

	assert_int_equal(load_text(&f, WORKER_OK "heartbeat_interval_ms = 99\n"), -EINVAL);
	assert_err_at(&f, 3, "heartbeat_interval_ms: 99 out of range (100..60000)");
}

static void test_deploy_config_rejects_unknown_section(void **state)
{
	struct cfg_file f;

	/* Empty: libinih never calls back for it, but the reader sees the line. */
	assert_int_equal(load_text(&f, WORKER_OK "\n[wrokers]\n"), -EINVAL);
	assert_err_at(&f, 4, "unknown section [wrokers]");
}

static void test_deploy_config_rejects_duplicate_key(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "[limits]\nmax_vms = 4\nmax_vms = 8\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 3, "'max_vms' set twice in [limits] (first at line 2)");
}

static void test_deploy_config_rejects_syntax_error(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, WORKER_OK "restart_max 3\n"), -EINVAL);
	assert_err_at(&f, 3, "syntax error");

	assert_int_equal(load_text(&f, "admin_uid = 0\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 1, "'admin_uid' outside of a section");
}

static void test_deploy_config_rejects_long_line(void **state)
{
	char text[600];
	struct cfg_file f;

	/* libinih would split it into two lines; it must be refused instead. */
	snprintf(text, sizeof(text), WORKER_OK "path = /%0300d\n", 0);
	assert_int_equal(load_text(&f, text), -EINVAL);
	assert_err_at(&f, 3, "line longer than");
}

static void test_deploy_config_rejects_bad_allow_entry(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "[devices]\nallow = 0000:00:03.0, 0000:00:20.0\n" WORKER_OK),
			 -EINVAL);
	assert_err_at(&f, 2, "'0000:00:20.0' is neither a PCI address");

	assert_int_equal(load_text(&f, "[devices]\nallow = ffff:1234\n" WORKER_OK), -EINVAL);
	assert_err_at(&f, 2, "'ffff:1234' is not a vendor:device id");
}

static void test_deploy_config_rejects_missing_or_double_worker_identity(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "[worker]\nseccomp = kill\n"), -EINVAL);
	assert_non_null(strstr(f.err.msg, "[worker] needs user= or uid_range="));

	assert_int_equal(load_text(&f, WORKER_OK "user = 65534\n"), -EINVAL);
	assert_err_at(&f, 3, "sets both user (line 3) and uid_range (line 2)");

	assert_int_equal(load_text(&f, "[worker]\nuser = 0\n"), -EINVAL);
	assert_err_at(&f, 2, "workers must not run as root");

	assert_int_equal(load_text(&f, "[worker]\nuid_range = 5000-4000\n"), -EINVAL);
	assert_err_at(&f, 2, "uid_range: 5000-4000 out of range");
}

static void test_deploy_config_rejects_heartbeat_timeout_below_interval(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, WORKER_OK "heartbeat_timeout_ms = 2000\n"
						 "heartbeat_interval_ms = 2000\n"),
			 -EINVAL);
	assert_err_at(&f, 4, "must be longer than heartbeat_interval_ms (2000)");
}

static void test_deploy_config_rejects_group_writable_file(void **state)
{
	char path[] = "/tmp/test_config.XXXXXX";
	struct vb_err err;
	struct brk_config *c = NULL;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, WORKER_OK, strlen(WORKER_OK)), (ssize_t)strlen(WORKER_OK));
	assert_int_equal(fchmod(fd, 0620), 0);
	close(fd);
	assert_int_equal(brk_config_load(path, &c, &err), -EPERM);
	assert_null(c);
	assert_non_null(strstr(err.msg, "writable by group or others (mode 0620)"));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(brk_config_load(path, &c, &err), 0);
	brk_config_free(c);
	unlink(path);
}

static void test_config_minimal_file_gets_defaults(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, WORKER_OK), 0);
	assert_int_equal(f.c->max_dma_mappings, 65535);
	assert_int_equal(f.c->heartbeat_interval_ms, 1000);
	assert_int_equal(f.c->heartbeat_timeout_ms, 3000);
	assert_int_equal(f.c->restart, BRK_RESTART_ON_FAILURE);
	assert_int_equal(f.c->seccomp, BRK_SECCOMP_KILL);
	assert_int_equal(f.c->admin_uid, 0);
	assert_false(f.c->admin_gid_set);
	assert_false(f.c->allow_bind);
	assert_int_equal(f.c->nallow, 0);
	assert_string_equal(f.c->control_socket, "/run/vfio-broker/control.sock");
	assert_int_equal(f.c->worker_uid_first, 61000);
	assert_int_equal(f.c->worker_uid_last, 61999);
	brk_config_free(f.c);
}

static void test_config_values_parse_with_suffixes_and_lists(void **state)
{
	struct cfg_file f;

	assert_int_equal(load_text(&f, "; comment\n[limits]\nmax_pinned_bytes = 3G\n"
				       "max_dma_mappings = 100 ; inline comment\n"
				       "[devices]\nallow = 00:03.0,1234:11E8 0001:02:1f.7\n"
				       "[broker]\nadmin_gid = 42\nlog_level = debug\n"
				       "[worker]\nuser = 65534\nrlimit_memlock = 64K\n"
				       "restart = never\nseccomp = off\n"),
			 0);
	assert_int_equal(f.c->max_pinned_bytes, 3ull << 30);
	assert_int_equal(f.c->max_dma_mappings, 100);
	assert_int_equal(f.c->nallow, 3);
	assert_string_equal(f.c->allow[0].bdf, "0000:00:03.0");
	assert_true(f.c->allow[1].is_id);
	assert_int_equal(f.c->allow[1].vendor, 0x1234);
	assert_int_equal(f.c->allow[1].device, 0x11e8);
	assert_string_equal(f.c->allow[2].bdf, "0001:02:1f.7");
	assert_int_equal(f.c->allow[2].line, 6);
	assert_true(f.c->admin_gid_set);
	assert_int_equal(f.c->admin_gid, 42);
	assert_int_equal(f.c->log_level, 7 /* LOG_DEBUG */);
	assert_true(f.c->worker_user_set);
	assert_int_equal(f.c->worker_uid_first, 65534);
	assert_int_equal(f.c->rlimits.memlock, 64 * 1024);
	assert_int_equal(f.c->restart, BRK_RESTART_NEVER);
	assert_int_equal(f.c->seccomp, BRK_SECCOMP_OFF);
	brk_config_free(f.c);
}

static void test_config_example_file_is_valid(void **state)
{
	struct brk_config *c = NULL;
	struct vb_err err;

	assert_int_equal(brk_config_load(VB_CONFIG_EXAMPLE, &c, &err), 0);
	/* The example allows the edu test device (1234:11e8) and nothing else. */
	assert_int_equal(brk_config_check_device(c, "0000:00:03.0", 0x1234, 0x11e8, &err), 0);
	assert_int_equal(brk_config_check_device(c, "0000:00:03.0", 0x8086, 0x10d3, &err), -EPERM);
	brk_config_free(c);
}

static void test_config_dump_reloads_to_same_values(void **state)
{
	struct cfg_file f, g;
	struct brk_config *first;
	char *text = NULL;

	assert_int_equal(load_text(&f, "[devices]\nallow = 1234:11e8 0000:00:04.0\n[limits]\n"
				       "max_pinned_bytes = 1G\n" WORKER_OK "restart_max = 9\n"
				       "prestart = 5\n"),
			 0);
	first = f.c;
	assert_int_equal(brk_config_dump(first, &text), 0);
	assert_int_equal(load_text(&g, text), 0);
	assert_int_equal(g.c->nallow, 2);
	assert_int_equal(g.c->max_pinned_bytes, first->max_pinned_bytes);
	assert_int_equal(g.c->restart_max, 9);
	assert_int_equal(g.c->prestart, 5);
	assert_int_equal(g.c->worker_uid_last, first->worker_uid_last);
	assert_string_equal(g.c->worker_path, first->worker_path);
	free(text);
	brk_config_free(g.c);
	brk_config_free(first);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_deploy_config_rejects_unknown_key),
	    cmocka_unit_test(test_deploy_config_rejects_bad_value),
	    cmocka_unit_test(test_config_allow_short_address_matches_canonical),
	    cmocka_unit_test(test_config_protocol_default_native_and_choices),
	    cmocka_unit_test(test_deploy_config_rejects_device_not_in_allowlist),
	    cmocka_unit_test(test_deploy_config_rejects_unreadable_file),
	    cmocka_unit_test(test_deploy_config_rejects_limits_out_of_range),
	    cmocka_unit_test(test_deploy_config_rejects_unknown_section),
	    cmocka_unit_test(test_deploy_config_rejects_duplicate_key),
	    cmocka_unit_test(test_deploy_config_rejects_syntax_error),
	    cmocka_unit_test(test_deploy_config_rejects_long_line),
	    cmocka_unit_test(test_deploy_config_rejects_bad_allow_entry),
	    cmocka_unit_test(test_deploy_config_rejects_missing_or_double_worker_identity),
	    cmocka_unit_test(test_deploy_config_rejects_heartbeat_timeout_below_interval),
	    cmocka_unit_test(test_deploy_config_rejects_group_writable_file),
	    cmocka_unit_test(test_config_minimal_file_gets_defaults),
	    cmocka_unit_test(test_config_values_parse_with_suffixes_and_lists),
	    cmocka_unit_test(test_config_example_file_is_valid),
	    cmocka_unit_test(test_config_dump_reloads_to_same_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
