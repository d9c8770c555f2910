/*
 * policyc: internal interfaces of the build-time policy compiler (policyc.c, policyc_parse.c,
 * policyc_consts.c). Not installed, not linked into anything that runs in production.
 */
#ifndef VB_POLICYC_H
#define VB_POLICYC_H

#include <stddef.h>
#include <stdint.h>

#include <seccomp.h>

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
 * errno and writes "path:line: reason" into err.
 */
int policyc_parse(const char *path, struct policyc_policy *p, char *err, size_t errlen);

#define POLICYC_MAX_INSNS 4096

/* An exported BPF program. */
struct policyc_prog {
	struct sock_filter insns[POLICYC_MAX_INSNS];
	size_t len;
};

/* libseccomp's filter for `p` with default action `def` (SCMP_ACT_KILL_PROCESS or
 * SCMP_ACT_LOG), or NULL with "path[:line]: reason" in err. Release it with seccomp_release. */
scmp_filter_ctx policyc_build(const struct policyc_policy *p, uint32_t def, char *err,
			      size_t errlen);
/* Exports ctx's BPF program into *prog. Errors: negative errno, with a reason in err. */
int policyc_export(scmp_filter_ctx ctx, struct policyc_prog *prog, char *err, size_t errlen);

#endif
