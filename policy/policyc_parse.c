/*
 * policyc_parse: reads a .policy file (syntax in policy/README.md) into rules and checks them
 * before libseccomp sees them: every syscall must exist on x86_64, every symbolic value must be
 * known, every rule must carry a reason, the default must kill, and no two rules may say
 * different things about the same call.
 *
 * Trusts: nothing in the file; it is build input, but a mistake in it must fail the build with
 * the file and line rather than produce a weaker filter.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seccomp.h>

#include "base.h"
#include "policyc.h"

#define POLICYC_MAX_TOKENS 64

struct policyc__ctx {
	const char *path;
	unsigned line;
	struct vb_err *err;
};

__attribute__((format(printf, 2, 3))) static int policyc__fail(struct policyc__ctx *c,
							       const char *fmt, ...)
{
	char why[VB_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return vb_errf(c->err, -EINVAL, "%s:%u: %s", c->path, c->line, why);
}

/* A value: terms joined by '|', each a number or a known name. */
static int policyc__value(struct policyc__ctx *c, const char *tok, uint64_t *ret)
{
	char buf[256], *save = NULL, *term, *end;
	uint64_t v = 0, t;

	if (strlen(tok) >= sizeof(buf) || tok[0] == '|' || tok[strlen(tok) - 1] == '|' ||
	    strstr(tok, "||"))
		return policyc__fail(c, "bad value '%s'", tok);
	strcpy(buf, tok);
	for (term = strtok_r(buf, "|", &save); term; term = strtok_r(NULL, "|", &save)) {
		if ((term[0] >= '0' && term[0] <= '9') || term[0] == '-') {
			errno = 0;
			t = strtoull(term, &end, 0);
			if (errno || *end)
				return policyc__fail(c, "bad number '%s'", term);
		} else if (policyc_const_lookup(term, &t) < 0) {
			return policyc__fail(c, "unknown name '%s' (add it to policyc_consts.c)",
					     term);
		}
		v |= t;
	}
	*ret = v;
	return 0;
}

static int policyc__op(const char *tok)
{
	static const struct {
		const char *s;
		enum sbx_cmp op;
	} ops[] = {{"==", SBX_CMP_EQ}, {"!=", SBX_CMP_NE}, {"<", SBX_CMP_LT},
		   {"<=", SBX_CMP_LE}, {">", SBX_CMP_GT},  {">=", SBX_CMP_GE}};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ops); i++)
		if (strcmp(tok, ops[i].s) == 0)
			return ops[i].op;
	return -1;
}

/* argN OP VALUE | argN & MASK == VALUE, starting at tok[*i]; advances *i. */
static int policyc__cond(struct policyc__ctx *c, char **tok, size_t ntok, size_t *i,
			 struct sbx_rule_cond *ret)
{
	size_t k = *i;
	int op, r;

	if (strncmp(tok[k], "arg", 3) != 0 || tok[k][3] < '0' || tok[k][3] > '5' || tok[k][4])
		return policyc__fail(c, "expected arg0..arg5, found '%s'", tok[k]);
	ret->arg = (uint8_t)(tok[k][3] - '0');
	if (k + 3 < ntok && strcmp(tok[k + 1], "&") == 0) {
		if (strcmp(tok[k + 3], "==") != 0 || k + 4 >= ntok)
			return policyc__fail(c,
					     "a mask is compared with '==': argN & MASK == VALUE");
		r = policyc__value(c, tok[k + 2], &ret->mask);
		if (r < 0)
			return r;
		r = policyc__value(c, tok[k + 4], &ret->value);
		if (r < 0)
			return r;
		if (ret->value & ~ret->mask)
			return policyc__fail(c, "value has bits outside its mask: never matches");
		ret->op = SBX_CMP_MASKED_EQ;
		*i = k + 5;
		return 0;
	}
	if (k + 2 >= ntok || (op = policyc__op(tok[k + 1])) < 0)
		return policyc__fail(c, "expected 'argN OP VALUE' with OP one of == != < <= > >=");
	r = policyc__value(c, tok[k + 2], &ret->value);
	if (r < 0)
		return r;
	ret->op = (uint8_t)op;
	ret->mask = ~0ull;
	*i = k + 3;
	return 0;
}

static int policyc__rule(struct policyc__ctx *c, char **tok, size_t ntok, const char *reason,
			 struct policyc_rule *ret)
{
	bool deny = strcmp(tok[0], "deny") == 0;
	size_t i = 2, end = ntok;
	uint64_t e;
	int nr, r;

	memset(ret, 0, sizeof(*ret));
	if (ntok < 2)
		return policyc__fail(c, "'%s' needs a syscall name", tok[0]);
	if (!reason || !*reason)
		return policyc__fail(c, "rule without a reason: end the line with '# why'");
	if (strlen(tok[1]) >= sizeof(ret->syscall) || strlen(reason) >= sizeof(ret->reason))
		return policyc__fail(c, "syscall name or reason too long");
	nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, tok[1]);
	if (nr < 0)
		return policyc__fail(c, "unknown syscall '%s' on x86_64", tok[1]);
	if (deny) {
		if (ntok < 4 || strcmp(tok[ntok - 2], "=>") != 0)
			return policyc__fail(c, "deny needs '=> ERRNO' at the end");
		if (policyc_errno_lookup(tok[ntok - 1], &e) < 0)
			return policyc__fail(c, "unknown errno '%s'", tok[ntok - 1]);
		ret->r.action = SBX_RULE_ERRNO;
		ret->r.err = (uint16_t)e;
		end = ntok - 2;
	} else {
		ret->r.action = SBX_RULE_ALLOW;
	}
	while (i < end) {
		if (strcmp(tok[i], "=>") == 0)
			return policyc__fail(c, "'=>' belongs to deny rules only, at the end");
		if (ret->r.nconds == SBX_RULE_MAX_CONDS)
			return policyc__fail(c, "more than %d conditions", SBX_RULE_MAX_CONDS);
		r = policyc__cond(c, tok, end, &i, &ret->r.conds[ret->r.nconds]);
		if (r < 0)
			return r;
		ret->r.nconds++;
	}
	strcpy(ret->syscall, tok[1]);
	strcpy(ret->reason, reason);
	ret->r.syscall = ret->syscall;
	ret->r.nr = nr;
	ret->r.line = c->line;
	return 0;
}

/* True when no argument vector can satisfy both rules: some argument is pinned to different
 * values by an exact or masked comparison in each. */
static bool policyc__disjoint(const struct sbx_rule *a, const struct sbx_rule *b)
{
	unsigned i, j;

	for (i = 0; i < a->nconds; i++) {
		for (j = 0; j < b->nconds; j++) {
			const struct sbx_rule_cond *x = &a->conds[i], *y = &b->conds[j];
			uint64_t m;

			if (x->arg != y->arg)
				continue;
			if ((x->op != SBX_CMP_EQ && x->op != SBX_CMP_MASKED_EQ) ||
			    (y->op != SBX_CMP_EQ && y->op != SBX_CMP_MASKED_EQ))
				continue;
			m = x->mask & y->mask;
			if ((x->value & m) != (y->value & m))
				return true;
		}
	}
	return false;
}

static int policyc__check_pair(struct policyc__ctx *c, const struct sbx_rule *a,
			       const struct sbx_rule *b)
{
	c->line = b->line;
	if (a->nconds == 0 || b->nconds == 0)
		return policyc__fail(c,
				     "'%s' also has a rule at line %u; a rule without "
				     "conditions must be the only one for its syscall",
				     b->syscall, a->line);
	if (a->action == b->action && a->err == b->err && a->nconds == b->nconds &&
	    memcmp(a->conds, b->conds, sizeof(a->conds[0]) * a->nconds) == 0)
		return policyc__fail(c, "same rule as line %u (two names for one number?)",
				     a->line);
	if ((a->action != b->action || a->err != b->err) && !policyc__disjoint(a, b))
		return policyc__fail(c, "may match the same call as line %u with another action",
				     a->line);
	return 0;
}

static int policyc__check(struct policyc__ctx *c, struct policyc_policy *p)
{
	size_t i, j;
	int r;

	if (!p->default_line) {
		c->line = 1;
		return policyc__fail(c, "no 'default kill_process' line");
	}
	for (i = 0; i < p->nrules; i++) {
		for (j = i + 1; j < p->nrules; j++) {
			if (p->rules[i].r.nr != p->rules[j].r.nr)
				continue;
			r = policyc__check_pair(c, &p->rules[i].r, &p->rules[j].r);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static char *policyc__trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int policyc__line(struct policyc__ctx *c, struct policyc_policy *p, char *line)
{
	char *hash = strchr(line, '#'), *reason = NULL, *tok[POLICYC_MAX_TOKENS], *save = NULL;
	size_t ntok = 0;

	if (hash) {
		*hash = '\0';
		reason = policyc__trim(hash + 1);
	}
	for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save)) {
		if (ntok == POLICYC_MAX_TOKENS)
			return policyc__fail(c, "line too long");
		tok[ntok++] = t;
	}
	if (ntok == 0)
		return 0;
	if (strcmp(tok[0], "default") == 0) {
		if (p->default_line)
			return policyc__fail(c, "second 'default' (first at line %u)",
					     p->default_line);
		if (ntok != 2 || strcmp(tok[1], "kill_process") != 0)
			return policyc__fail(c, "the only default is 'kill_process'");
		p->default_line = c->line;
		return 0;
	}
	if (strcmp(tok[0], "allow") != 0 && strcmp(tok[0], "deny") != 0)
		return policyc__fail(c, "expected 'allow', 'deny' or 'default', found '%s'",
				     tok[0]);
	if (p->nrules == POLICYC_MAX_RULES)
		return policyc__fail(c, "more than %d rules", POLICYC_MAX_RULES);
	return policyc__rule(c, tok, ntok, reason, &p->rules[p->nrules++]);
}

int policyc_parse(const char *path, struct policyc_policy *p, struct vb_err *err)
{
	struct policyc__ctx c = {.path = path, .line = 0, .err = err};
	_cleanup_free_ char *line = NULL;
	_cleanup_fclose_ FILE *f = NULL;
	size_t cap = 0;
	int r = 0;

	memset(p, 0, sizeof(*p));
	p->path = path;
	f = fopen(path, "re");
	if (!f)
		return vb_errf(err, -errno, "%s: %s", path, strerror(errno));
	while (getline(&line, &cap, f) >= 0) {
		c.line++;
		r = policyc__line(&c, p, line);
		if (r < 0)
			break;
	}
	if (r == 0 && ferror(f))
		r = vb_errf(err, -EIO, "%s: read error", path);
	if (r == 0)
		r = policyc__check(&c, p);
	return r;
}
