/*
 * test_log: vfio-brokerd's log lines (broker/log.c): the plain stderr format, the level filter,
 * escaping of control characters, and when a line goes to the journal instead (JOURNAL_STREAM
 * must name the very stream stderr is). The journal's structured fields themselves are checked
 * in the systemd guest (tests/guest/cases/deploy.py), where a journald receives them.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "log.h"

struct capture {
	int saved;
	int fd;
};

/* Points stderr at a fresh memfd; capture_end() returns what was written there. */
static void capture_begin(struct capture *c)
{
	fflush(stderr);
	c->saved = dup(STDERR_FILENO);
	c->fd = memfd_create("stderr", MFD_CLOEXEC);
	assert_true(c->saved >= 0 && c->fd >= 0);
	assert_int_equal(dup2(c->fd, STDERR_FILENO), STDERR_FILENO);
}

static char *capture_end(struct capture *c)
{
	static char buf[4096];
	ssize_t n;

	fflush(stderr);
	dup2(c->saved, STDERR_FILENO);
	close(c->saved);
	n = pread(c->fd, buf, sizeof(buf) - 1, 0);
	close(c->fd);
	assert_true(n >= 0);
	buf[n] = '\0';
	return buf;
}

static int setup(void **state)
{
	unsetenv("JOURNAL_STREAM");
	brk_log_open("vfio-brokerd");
	brk_log_set_level(LOG_INFO);
	return 0;
}

static void test_log_plain_line_names_ident_and_level(void **state)
{
	struct capture c;

	capture_begin(&c);
	brk_warn("device %s: %d", "0000:01:00.0", 7);
	assert_string_equal(capture_end(&c), "vfio-brokerd: warning: device 0000:01:00.0: 7\n");
}

static void test_log_below_level_dropped(void **state)
{
	struct capture c;

	brk_log_set_level(LOG_NOTICE);
	capture_begin(&c);
	brk_info("not shown");
	brk_debug("not shown either");
	brk_notice("shown");
	assert_string_equal(capture_end(&c), "vfio-brokerd: notice: shown\n");
	assert_int_equal(brk_log_get_level(), LOG_NOTICE);
}

static void test_log_control_chars_escaped(void **state)
{
	struct capture c;

	capture_begin(&c);
	brk_err("vm %s", "a\nvfio-brokerd: error: forged\x1b[2J");
	assert_string_equal(capture_end(&c),
			    "vfio-brokerd: error: vm a\\x0avfio-brokerd: error: forged\\x1b[2J\n");
}

static void test_log_errno_appends_reason_and_returns_err(void **state)
{
	struct capture c;
	int r;

	capture_begin(&c);
	r = brk_log_errno(LOG_ERR, -ENOENT, "cannot open %s", "/x");
	assert_string_equal(capture_end(&c),
			    "vfio-brokerd: error: cannot open /x: No such file or directory\n");
	assert_int_equal(r, -ENOENT);
}

static void test_log_about_plain_line_unchanged(void **state)
{
	struct brk_log_about a = {.bdf = "0000:01:00.0", .vm = "vm1", .worker_pid = 42};
	struct capture c;

	capture_begin(&c);
	brk_log_about(LOG_INFO, &a, "%s: worker %d ready", a.bdf, (int)a.worker_pid);
	brk_log_about(LOG_DEBUG, &a, "below the level");
	assert_string_equal(capture_end(&c), "vfio-brokerd: info: 0000:01:00.0: worker 42 ready\n");
}

static void test_log_journal_stream_of_other_file_stays_plain(void **state)
{
	struct stat st;
	char v[64];

	assert_int_equal(stat("/", &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	brk_log_open(NULL);
	assert_false(brk_log_to_journal());
	setenv("JOURNAL_STREAM", "not-a-stream", 1);
	brk_log_open(NULL);
	assert_false(brk_log_to_journal());
}

static void test_log_journal_stream_of_stderr_selects_journal(void **state)
{
	struct stat st;
	char v[64];

	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", v, 1);
	brk_log_open(NULL);
	assert_true(brk_log_to_journal());
	unsetenv("JOURNAL_STREAM");
	brk_log_open(NULL);
	assert_false(brk_log_to_journal());
}

static void test_log_level_names_round_trip_and_reject_unknown(void **state)
{
	static const char *const names[] = {"error", "warning", "notice", "info", "debug"};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		assert_string_equal(brk_log_level_to_string(brk_log_level_from_string(names[i])),
				    names[i]);
	assert_int_equal(brk_log_level_from_string("warn"), LOG_WARNING);
	assert_int_equal(brk_log_level_from_string("verbose"), -EINVAL);
	assert_int_equal(brk_log_level_from_string(""), -EINVAL);
	/* An out-of-range level leaves the current one. */
	brk_log_set_level(LOG_DEBUG);
	brk_log_set_level(99);
	assert_int_equal(brk_log_get_level(), LOG_DEBUG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_log_plain_line_names_ident_and_level, setup),
	    cmocka_unit_test_setup(test_log_below_level_dropped, setup),
	    cmocka_unit_test_setup(test_log_control_chars_escaped, setup),
	    cmocka_unit_test_setup(test_log_errno_appends_reason_and_returns_err, setup),
	    cmocka_unit_test_setup(test_log_about_plain_line_unchanged, setup),
	    cmocka_unit_test_setup(test_log_journal_stream_of_other_file_stays_plain, setup),
	    cmocka_unit_test_setup(test_log_journal_stream_of_stderr_selects_journal, setup),
	    cmocka_unit_test_setup(test_log_level_names_round_trip_and_reject_unknown, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
