/*
 * need_userns(): the first call of every test that spawns sandboxed workers (in the test body:
 * cmocka reports a skip() in a setup function as an error). Where this process cannot
 * create the workers' namespaces (a chroot, most containers, a kernel that forbids unprivileged
 * user namespaces), the test is skipped with the probe's reason printed: tests/run-tests.sh shows
 * it on the skip line, and a CI run (CI=true) fails when anything was skipped. Include
 * <cmocka.h> first.
 */
#ifndef VB_TESTS_USERNS_TEST_H
#define VB_TESTS_USERNS_TEST_H

#include "err.h"
#include "sandbox.h"

static inline void need_userns(void)
{
	struct vb_err err = {0};
	int r = sbx_userns_probe(&err);

	if (r < 0) {
		print_message("cannot sandbox workers: %s\n", vb_err_msg(&err, r));
		skip();
	}
}

#endif
