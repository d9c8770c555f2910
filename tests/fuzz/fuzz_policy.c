/*
 * fuzz_policy: the seccomp policy compiler's input. Arbitrary bytes are a .policy file: parsed
 * and checked by policyc_parse, and when that accepts it, built by libseccomp with both default
 * actions and exported as BPF, exactly as policyc does at build time. A refusal must carry
 * "path:line: reason" (or "path: reason") and a negative errno; an accepted policy must have a
 * default and a reason on every rule, and nothing may crash or leak on the way.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* By path: policy/ on the include path would put its seccomp.h before libseccomp's. */
#include "../../policy/policyc.h"
#include "fuzz_fail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every accepted policy is built in a forked child (policyc_compile), and a fork copies the page
 * tables of all the memory the process has touched: with ASan's default 256 MB quarantine of
 * freed memory that was most of this target's time (peak RSS 142 MB against 48 MB, 1,330
 * against 1,770 executions per CPU second). A use-after-free is still caught while less than
 * 8 MB has been freed since, far more than one policy allocates. ASAN_OPTIONS overrides it. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "quarantine_size_mb=8";
}

static struct policyc_policy policy;
static struct policyc_prog kill_prog, log_prog;

/* As policyc does it: libseccomp in a bounded child (policyc_compile). Its time-out is a refusal
 * with a reason like any other. The bound is 1 s here (policyc's default is 60 s): the fuzzer
 * keeps finding variants of the rules that make libseccomp 2.5.4 loop, and in campaign 11 each
 * of two fuzz_policy processes spent nearly all its time in children waiting out a 5 s bound
 * (8 to 10 of them per 30 s, at about 50 executions per second). The largest shipped policy,
 * broker.policy, builds in 10 to 30 ms under ASan (policyc, the whole process). */
static void build(const char *path)
{
	struct vb_err err = {0};
	int r = policyc_compile(&policy, NULL, 1, &kill_prog, &log_prog, &err);

	if (r == 0) {
		if (kill_prog.len == 0 || kill_prog.len > POLICYC_MAX_INSNS || log_prog.len == 0 ||
		    log_prog.len > POLICYC_MAX_INSNS)
			fuzz_fail("a compiled policy of %zu and %zu instructions (1 to %d each)",
				  (size_t)kill_prog.len, (size_t)log_prog.len, POLICYC_MAX_INSNS);
	} else if (r < -4095 || err.code != r || strncmp(err.msg, path, strlen(path)) != 0) {
		/* A refusal is a negative errno and names the file. */
		fuzz_fail("policyc_compile returned %d (err.code %d, message \"%s\")", r, err.code,
			  err.msg);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	struct vb_err err = {0};
	int fd = memfd_create("fuzz-policy", MFD_CLOEXEC), r;

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		fuzz_fail("set-up: writing the input to a memfd: %m");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = policyc_parse(path, &policy, &err);
	if (r < 0) {
		/* An error is a negative errno with the file named. */
		if (r < -4095 || err.code != r || strncmp(err.msg, path, strlen(path)) != 0)
			fuzz_fail("policyc_parse returned %d (err.code %d, message \"%s\")", r,
				  err.code, err.msg);
	} else {
		if (r != 0 || !policy.default_line || policy.nrules > POLICYC_MAX_RULES)
			fuzz_fail(
			    "policyc_parse returned %d with default line %d and %zu rules (at "
			    "most %d)",
			    r, (int)policy.default_line, (size_t)policy.nrules, POLICYC_MAX_RULES);
		for (size_t i = 0; i < policy.nrules; i++)
			if (!policy.rules[i].reason[0] || !policy.rules[i].syscall[0])
				fuzz_fail("parsed rule %zu has %s", i,
					  policy.rules[i].syscall[0] ? "no reason" : "no syscall");
		build(path);
	}
	close(fd);
	return 0;
}
