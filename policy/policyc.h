/*
 * policyc: internal interfaces of the build-time policy compiler (policyc.c, policyc_parse.c,
 * policyc_consts.c). Not installed, not linked into anything that runs in production.
 */
#ifndef VB_POLICYC_H
#define VB_POLICYC_H

#include <stddef.h>
#include <stdint.h>

#include <seccomp.h>

#include "err.h"
#include "policy_table.h"

struct policyc_const {
	const char *name;
	uint64_t value;
};

/* A symbolic value (ioctl request, flag, ...) or an errno name; -ENOENT when unknown. */
int policyc_const_lookup(const char *name, uint64_t *ret);
int policyc_errno_lookup(const char *name, uint64_t *ret);

#define POLICYC_MAX_RULES 512

struct policyc_rule {
	struct sbx_rule r;
	char syscall[64];
	char reason[256];
};

struct policyc_policy {
	const char *path;
	unsigned default_line; /* 0 when the file has no `default` line */
	size_t nrules;
	struct policyc_rule rules[POLICYC_MAX_RULES];
};

/*
 * Parses a .policy file into *p and checks it (known syscalls and names, a reason on every
 * rule, a kill_process default, no duplicate or overlapping rules). On error returns a negative
 * errno with "path:line: reason" in `err` (base/err.h).
 */
int policyc_parse(const char *path, struct policyc_policy *p, struct vb_err *err);

#define POLICYC_MAX_INSNS 4096

/* An exported BPF program. */
struct policyc_prog {
	struct sock_filter insns[POLICYC_MAX_INSNS];
	size_t len;
};

/* libseccomp's filter for `p` with default action `def` (SCMP_ACT_KILL_PROCESS or
 * SCMP_ACT_LOG), or NULL with "path[:line]: reason" in `err`. Release it with seccomp_release. */
scmp_filter_ctx policyc_build(const struct policyc_policy *p, uint32_t def, struct vb_err *err);
/* Exports ctx's BPF program into *prog. Errors: negative errno, with a reason in `err`. */
int policyc_export(scmp_filter_ctx ctx, struct policyc_prog *prog, struct vb_err *err);

/*
 * Builds and exports both programs (and writes libseccomp's pseudo-code to `pfc` when not NULL)
 * in a child process that gets `timeout_s` seconds (0: no bound): libseccomp loops forever on
 * some rule sets the parser accepts (found by fuzz_policy: two rules for one syscall, each
 * comparing a shared argument and then a different one), and a build must fail with a reason,
 * never hang. Errors: -ETIMEDOUT, -EIO (the child died), or the build's own, each with "path:
 * reason" in `err`.
 */
#define POLICYC_BUILD_TIMEOUT_S 60
int policyc_compile(const struct policyc_policy *p, const char *pfc, unsigned timeout_s,
		    struct policyc_prog *kill_prog, struct policyc_prog *log_prog,
		    struct vb_err *err);

#endif
