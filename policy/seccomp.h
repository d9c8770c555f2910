/*
 * seccomp: loads the seccomp policy of a process role (policy/<role>.policy, compiled into BPF at
 * build time by policyc). Needs no libseccomp at run time, so the static worker can link it.
 *
 * Errors are negative errno values. Nothing here logs.
 */
#ifndef VB_SECCOMP_H
#define VB_SECCOMP_H

enum sbx_role {
	SBX_ROLE_WORKER,
	SBX_ROLE_BROKER,
};

enum sbx_seccomp_mode {
	SBX_SECCOMP_KILL, /* the default: a call outside the policy kills the whole process */
	SBX_SECCOMP_LOG, /* bringing up a policy: such calls are allowed and logged by the kernel */
	SBX_SECCOMP_OFF, /* nothing is loaded (debugging only) */
};

/*
 * Sets no_new_privs, then installs the role's filter on every thread of the process
 * (SECCOMP_FILTER_FLAG_TSYNC). A filter cannot be removed; a second load stacks another filter.
 * SBX_SECCOMP_OFF returns 0 and changes nothing.
 *   -EINVAL      unknown role or mode;
 *   -EOPNOTSUPP  this build's policies are for another architecture than the running code, or
 *                the kernel lacks SECCOMP_RET_LOG for SBX_SECCOMP_LOG;
 *   -EBUSY       another thread could not be synchronised (it runs under a diverging filter);
 *   other        the errno of prctl() or seccomp().
 */
int sbx_seccomp_load(enum sbx_role role, enum sbx_seccomp_mode mode);

/* "kill", "log" or "off" (the value of a --seccomp= option); -EINVAL for anything else,
 * leaving *ret alone. */
int sbx_seccomp_mode_parse(const char *s, enum sbx_seccomp_mode *ret);

/* "kill", "log", "off"; NULL for an unknown value. */
const char *sbx_seccomp_mode_name(enum sbx_seccomp_mode mode);
/* "worker", "broker"; NULL for an unknown value. */
const char *sbx_role_name(enum sbx_role role);

#endif
