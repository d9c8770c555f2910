/*
 * policy_table: the compiled form of a policy/<role>.policy file, as policyc generates it into
 * vb_policy. Each role carries two BPF programs (default action kill, default action log) and the
 * rules they were built from, so that tests and tools can reason about a policy without parsing
 * its text again. The tables are generated at build time and are read-only.
 */
#ifndef VB_POLICY_TABLE_H
#define VB_POLICY_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include <linux/filter.h>

#include "seccomp.h"

enum sbx_rule_action {
	SBX_RULE_ALLOW = 1,
	SBX_RULE_ERRNO = 2, /* the call fails with `err`, the process lives */
};

/* Argument comparisons, with libseccomp's meaning: all 64 bits, unsigned. */
enum sbx_cmp {
	SBX_CMP_EQ = 1,
	SBX_CMP_NE,
	SBX_CMP_LT,
	SBX_CMP_LE,
	SBX_CMP_GT,
	SBX_CMP_GE,
	SBX_CMP_MASKED_EQ, /* (arg & mask) == value */
};

#define SBX_RULE_MAX_CONDS 6

struct sbx_rule_cond {
	uint8_t arg; /* 0..5 */
	uint8_t op;  /* enum sbx_cmp */
	uint64_t mask;
	uint64_t value;
};

struct sbx_rule {
	const char *syscall;
	int nr; /* x86_64 syscall number */
	unsigned line;
	uint8_t action; /* enum sbx_rule_action */
	uint16_t err;	/* positive errno for SBX_RULE_ERRNO */
	uint8_t nconds;
	struct sbx_rule_cond conds[SBX_RULE_MAX_CONDS];
};

struct sbx_bpf {
	const struct sock_filter *insns;
	unsigned short len;
};

struct sbx_policy {
	const char *name;   /* "worker", "broker" */
	const char *source; /* the .policy file it came from, as given to policyc */
	uint32_t arch;	    /* AUDIT_ARCH_* the programs check for */
	struct sbx_bpf kill;
	struct sbx_bpf log;
	const struct sbx_rule *rules;
	size_t nrules;
};

/* The generated tables (vb_policy). */
extern const struct sbx_policy sbx_policy_worker;
extern const struct sbx_policy sbx_policy_broker;

/* The policy of a role, or NULL for a value outside enum sbx_role. */
const struct sbx_policy *sbx_policy_get(enum sbx_role role);

#endif
