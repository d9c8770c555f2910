/*
 * test_policyc: the build-time policy compiler (policy/policyc*.c). Runs the real policyc on
 * small policy files and checks that good ones compile and that every kind of mistake fails
 * with "file:line: reason" and leaves no output behind, which is what fails the build.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64];
/* policyc's --build-timeout for the next run (seconds, as text). */
static const char *build_timeout = "60";

struct run {
	int status;
	char err[1024];
};

/* Writes `text` to DIR/NAME.policy and runs policyc on it with output DIR/NAME.c. */
static struct run policyc(const char *name, const char *text)
{
	char in[128], out[128];
	struct run r = {0};
	int fd, p[2];
	ssize_t n;
	size_t len = 0;
	pid_t pid;

	snprintf(in, sizeof(in), "%s/%s.policy", dir, name);
	snprintf(out, sizeof(out), "%s/%s.c", dir, name);
	fd = open(in, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 2);
		execl(POLICYC_PATH, "policyc", "--name", "t", "--output", out, "--build-timeout",
		      build_timeout, in, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], r.err + len, sizeof(r.err) - 1 - len)) > 0)
		len += (size_t)n;
	r.err[len] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &r.status, 0), pid);
	return r;
}

static bool output_exists(const char *name)
{
	char out[128];

	snprintf(out, sizeof(out), "%s/%s.c", dir, name);
	return access(out, F_OK) == 0;
}

/* Compilation fails, names the file and line, says why, and writes nothing. */
static void expect_error(const char *name, const char *text, unsigned line, const char *why)
{
	struct run r = policyc(name, text);
	char where[160];

	assert_true(WIFEXITED(r.status));
	assert_int_equal(WEXITSTATUS(r.status), 1);
	snprintf(where, sizeof(where), "%s/%s.policy:%u: ", dir, name, line);
	if (strncmp(r.err, where, strlen(where)) != 0 || !strstr(r.err, why))
		fail_msg("want \"%s...%s\", got \"%s\"", where, why, r.err);
	assert_false(output_exists(name));
}

#define HEADER "default kill_process\n"

static void test_policyc_valid_policy_compiles(void **state)
{
	struct run r = policyc("good", HEADER "allow read # r\n"
					      "allow ioctl arg1 == VFIO_DEVICE_GET_INFO # vfio\n"
					      "allow mmap arg2 & PROT_EXEC == 0 # no exec\n"
					      "deny openat => ENOENT # probe\n");
	char out[128], text[8192];
	ssize_t n;
	int fd;

	assert_true(WIFEXITED(r.status));
	assert_int_equal(WEXITSTATUS(r.status), 0);
	snprintf(out, sizeof(out), "%s/good.c", dir);
	fd = open(out, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	assert_true(n > 0);
	text[n] = '\0';
	assert_non_null(strstr(text, "const struct sbx_policy sbx_policy_t = {"));
	assert_non_null(strstr(text, "{\"openat\", 257, 5, SBX_RULE_ERRNO, 2, 0, {}}"));
	/* VFIO_DEVICE_GET_INFO is _IO(';', 100 + 7) = 0x3b6b, from <linux/vfio.h>. */
	assert_non_null(strstr(text, "0x3b6bull"));
}

static void test_policyc_unknown_syscall_fails(void **state)
{
	expect_error("nosys", HEADER "allow read # r\nallow not_a_syscall # x\n", 3,
		     "unknown syscall 'not_a_syscall'");
}

static void test_policyc_missing_reason_fails(void **state)
{
	expect_error("noreason", HEADER "allow read\n", 2, "rule without a reason");
	expect_error("emptyreason", HEADER "allow read #   \n", 2, "rule without a reason");
}

static void test_policyc_unknown_name_fails(void **state)
{
	expect_error("noname", HEADER "allow ioctl arg1 == VFIO_NOT_A_THING # x\n", 2,
		     "unknown name 'VFIO_NOT_A_THING'");
}

static void test_policyc_default_other_than_kill_fails(void **state)
{
	expect_error("nodefault", "allow read # r\n", 1, "no 'default kill_process' line");
	expect_error("allowdefault", "default allow\n", 1, "the only default is 'kill_process'");
	expect_error("twodefaults", HEADER HEADER, 2, "second 'default'");
}

static void test_policyc_overlapping_rules_fail(void **state)
{
	expect_error("overlap",
		     HEADER "allow openat arg2 & O_CREAT == 0 # ro\ndeny openat => EPERM # x\n", 3,
		     "a rule without conditions must be the only one");
	expect_error("overlap2",
		     HEADER "allow ioctl arg1 == FIONBIO # a\ndeny ioctl arg2 == 0 => EPERM # b\n",
		     3, "may match the same call as line 2");
	expect_error("dup",
		     HEADER "allow ioctl arg1 == VFIO_IOMMU_GET_INFO # a\n"
			    "allow ioctl arg1 == VFIO_DEVICE_GET_PCI_HOT_RESET_INFO # b\n",
		     3, "same rule as line 2");
}

/*
 * libseccomp loops forever on two rules for one syscall that compare a shared argument and then
 * different ones (found by fuzz_policy; the parser accepts them: they allow the same). policyc
 * must fail with the file and a reason when its bound runs out, not hang the build. The loop is
 * endless, so the 2 s bound is no race.
 */
static void test_policyc_libseccomp_loop_fails_with_reason(void **state)
{
	struct run r;
	char where[160];

	build_timeout = "2";
	r = policyc("loop", HEADER "allow futex arg2 <= 10 arg1 >= 0 # a\n"
				   "allow futex arg3 <= 10 arg1 >= 0 # b\n");
	build_timeout = "60";
	assert_true(WIFEXITED(r.status));
	assert_int_equal(WEXITSTATUS(r.status), 1);
	snprintf(where, sizeof(where), "%s/loop.policy: ", dir);
	if (strncmp(r.err, where, strlen(where)) != 0 ||
	    !strstr(r.err, "libseccomp did not finish building the filter within 2 s"))
		fail_msg("got \"%s\"", r.err);
	assert_false(output_exists("loop"));
	(void)state;
}

static void test_policyc_bad_syntax_fails(void **state)
{
	expect_error("badarg", HEADER "allow ioctl arg6 == 1 # x\n", 2, "expected arg0..arg5");
	expect_error("badop", HEADER "allow ioctl arg1 =< 1 # x\n", 2, "expected 'argN OP VALUE'");
	expect_error("badmask", HEADER "allow mmap arg2 & PROT_EXEC == PROT_READ # x\n", 2,
		     "value has bits outside its mask");
	expect_error("badnum", HEADER "allow ioctl arg1 == 12abc # x\n", 2, "bad number '12abc'");
	expect_error("noerrno", HEADER "deny openat # x\n", 2, "deny needs '=> ERRNO'");
	expect_error("badverb", HEADER "permit read # x\n", 2, "expected 'allow', 'deny'");
	expect_error("arrow", HEADER "allow read => EPERM # x\n", 2, "belongs to deny rules");
}

static void test_policyc_bad_command_line_fails(void **state)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(null, 2);
		execl(POLICYC_PATH, "policyc", "--name", "Bad-Name", "--output", "/dev/null",
		      "x.policy", (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
}

static int setup(void **state)
{
	snprintf(dir, sizeof(dir), "/tmp/vb-policyc-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_policyc_valid_policy_compiles),
	    cmocka_unit_test(test_policyc_libseccomp_loop_fails_with_reason),
	    cmocka_unit_test(test_policyc_unknown_syscall_fails),
	    cmocka_unit_test(test_policyc_missing_reason_fails),
	    cmocka_unit_test(test_policyc_unknown_name_fails),
	    cmocka_unit_test(test_policyc_default_other_than_kill_fails),
	    cmocka_unit_test(test_policyc_overlapping_rules_fail),
	    cmocka_unit_test(test_policyc_bad_syntax_fails),
	    cmocka_unit_test(test_policyc_bad_command_line_fails),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
