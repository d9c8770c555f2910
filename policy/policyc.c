/*
 * policyc: the build-time seccomp policy compiler.
 *
 *   policyc --name NAME --output FILE.c [--pfc FILE.pfc] POLICY
 *
 * Parses POLICY (policyc_parse.c), builds it with libseccomp for x86_64 twice (default action
 * KILL_PROCESS, and LOG for --seccomp=log), exports both BPF programs and writes them, with the
 * rule table, as C for the vb_policy library (`const struct sbx_policy sbx_policy_NAME`), so that
 * nothing needs libseccomp at run time. --pfc also writes libseccomp's pseudo-code of the kill
 * program for reviewers. Any error prints "file:line: reason" and exits 1 without leaving an
 * output file behind, which fails the build.
 *
 * Trusts: libseccomp to translate rules into BPF; nothing in the policy file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/audit.h>
#include <seccomp.h>

#include "policyc.h"

#define POLICYC_MAX_INSNS 4096

struct policyc_prog {
	struct sock_filter insns[POLICYC_MAX_INSNS];
	size_t len;
};

static const enum scmp_compare policyc__scmp_ops[] = {
    [SBX_CMP_EQ] = SCMP_CMP_EQ,
    [SBX_CMP_NE] = SCMP_CMP_NE,
    [SBX_CMP_LT] = SCMP_CMP_LT,
    [SBX_CMP_LE] = SCMP_CMP_LE,
    [SBX_CMP_GT] = SCMP_CMP_GT,
    [SBX_CMP_GE] = SCMP_CMP_GE,
    [SBX_CMP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
};

static int policyc__add_rule(scmp_filter_ctx ctx, const struct sbx_rule *r)
{
	struct scmp_arg_cmp cmp[SBX_RULE_MAX_CONDS];
	uint32_t action = r->action == SBX_RULE_ALLOW ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(r->err);
	unsigned i;

	for (i = 0; i < r->nconds; i++) {
		cmp[i].arg = r->conds[i].arg;
		cmp[i].op = policyc__scmp_ops[r->conds[i].op];
		if (r->conds[i].op == SBX_CMP_MASKED_EQ) {
			cmp[i].datum_a = r->conds[i].mask;
			cmp[i].datum_b = r->conds[i].value;
		} else {
			cmp[i].datum_a = r->conds[i].value;
			cmp[i].datum_b = 0;
		}
	}
	/* _exact: libseccomp must not rewrite a rule into something we did not review. */
	return seccomp_rule_add_exact_array(ctx, action, r->nr, r->nconds, cmp);
}

static scmp_filter_ctx policyc__build(const struct policyc_policy *p, uint32_t def, char *err,
				      size_t errlen)
{
	scmp_filter_ctx ctx = seccomp_init(def);
	size_t i;
	int r;

	if (!ctx) {
		snprintf(err, errlen, "%s: seccomp_init failed", p->path);
		return NULL;
	}
	/* Only x86_64: an i386 (int 0x80) or x32 call does not match the arch check and is
	 * killed whatever the mode. */
	r = seccomp_arch_add(ctx, SCMP_ARCH_X86_64);
	if (r < 0 && r != -EEXIST)
		goto fail_ctx;
	if (seccomp_arch_native() != SCMP_ARCH_X86_64) {
		r = seccomp_arch_remove(ctx, SCMP_ARCH_NATIVE);
		if (r < 0)
			goto fail_ctx;
	}
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r < 0)
		goto fail_ctx;
	/* A binary tree keeps the hot calls (pread/pwrite per trapped BAR access) cheap. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (r < 0)
		goto fail_ctx;
	for (i = 0; i < p->nrules; i++) {
		r = policyc__add_rule(ctx, &p->rules[i].r);
		if (r < 0) {
			snprintf(err, errlen, "%s:%u: libseccomp rejected the rule: %s", p->path,
				 p->rules[i].r.line, strerror(-r));
			seccomp_release(ctx);
			return NULL;
		}
	}
	return ctx;
fail_ctx:
	snprintf(err, errlen, "%s: libseccomp set-up failed: %s", p->path, strerror(-r));
	seccomp_release(ctx);
	return NULL;
}

static int policyc__export(scmp_filter_ctx ctx, struct policyc_prog *prog, char *err, size_t errlen)
{
	int fd = memfd_create("policyc", MFD_CLOEXEC), r;
	ssize_t n;
	off_t size;

	if (fd < 0)
		return -errno;
	r = seccomp_export_bpf(ctx, fd);
	if (r < 0) {
		snprintf(err, errlen, "seccomp_export_bpf: %s", strerror(-r));
		goto out;
	}
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) || (size_t)size > sizeof(prog->insns)) {
		snprintf(err, errlen, "exported program has a bad size (%lld bytes)",
			 (long long)size);
		r = -EFBIG;
		goto out;
	}
	n = pread(fd, prog->insns, (size_t)size, 0);
	if (n != size) {
		r = n < 0 ? -errno : -EIO;
		snprintf(err, errlen, "reading the exported program: %s", strerror(-r));
		goto out;
	}
	prog->len = (size_t)size / sizeof(struct sock_filter);
	r = 0;
out:
	close(fd);
	return r;
}

static void policyc__emit_prog(FILE *f, const char *name, const char *mode,
			       const struct policyc_prog *prog)
{
	size_t i;

	fprintf(f, "static const struct sock_filter %s_%s[%zu] = {\n", name, mode, prog->len);
	for (i = 0; i < prog->len; i++)
		fprintf(f, "\t{0x%04x, %u, %u, 0x%08x},\n", prog->insns[i].code, prog->insns[i].jt,
			prog->insns[i].jf, prog->insns[i].k);
	fprintf(f, "};\n\n");
}

static void policyc__emit_rules(FILE *f, const char *name, const struct policyc_policy *p)
{
	size_t i;
	unsigned j;

	fprintf(f, "static const struct sbx_rule %s_rules[%zu] = {\n", name, p->nrules);
	for (i = 0; i < p->nrules; i++) {
		const struct sbx_rule *r = &p->rules[i].r;

		fprintf(f, "\t{\"%s\", %d, %u, %s, %u, %u, {", r->syscall, r->nr, r->line,
			r->action == SBX_RULE_ALLOW ? "SBX_RULE_ALLOW" : "SBX_RULE_ERRNO",
			(unsigned)r->err, (unsigned)r->nconds);
		for (j = 0; j < r->nconds; j++)
			fprintf(f, "%s{%u, %u, 0x%llxull, 0x%llxull}", j ? ", " : "",
				r->conds[j].arg, r->conds[j].op,
				(unsigned long long)r->conds[j].mask,
				(unsigned long long)r->conds[j].value);
		fprintf(f, "}},\n");
	}
	fprintf(f, "};\n\n");
}

static int policyc__emit(const char *out, const char *name, const struct policyc_policy *p,
			 const struct policyc_prog *kill, const struct policyc_prog *log)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", out, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f,
		"/* Generated by policyc from %s: do not edit. Edit the policy and rebuild. */\n",
		p->path);
	fprintf(f, "#include \"policy_table.h\"\n\n");
	policyc__emit_prog(f, name, "kill", kill);
	policyc__emit_prog(f, name, "log", log);
	policyc__emit_rules(f, name, p);
	fprintf(f, "const struct sbx_policy sbx_policy_%s = {\n", name);
	fprintf(f, "\t.name = \"%s\",\n\t.source = \"%s\",\n", name, p->path);
	fprintf(f, "\t.arch = 0x%08xu,\n", AUDIT_ARCH_X86_64);
	fprintf(f, "\t.kill = {%s_kill, %zu},\n\t.log = {%s_log, %zu},\n", name, kill->len, name,
		log->len);
	fprintf(f, "\t.rules = %s_rules,\n\t.nrules = %zu,\n};\n", name, p->nrules);
	if (fflush(f) != 0 || ferror(f)) {
		fclose(f);
		unlink(tmp);
		return -EIO;
	}
	fclose(f);
	if (rename(tmp, out) < 0) {
		unlink(tmp);
		return -errno;
	}
	return 0;
}

static int policyc__pfc(scmp_filter_ctx ctx, const char *path)
{
	FILE *f = fopen(path, "we");
	int r;

	if (!f)
		return -errno;
	r = seccomp_export_pfc(ctx, fileno(f));
	fclose(f);
	return r;
}

static int policyc__usage(void)
{
	fprintf(stderr, "usage: policyc --name NAME --output FILE.c [--pfc FILE] POLICY\n");
	return 2;
}

static int policyc__valid_name(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

int main(int argc, char **argv)
{
	static struct policyc_policy policy;
	static struct policyc_prog kill, log;
	const char *name = NULL, *out = NULL, *pfc = NULL, *in = NULL;
	scmp_filter_ctx kctx = NULL, lctx = NULL;
	char err[1024] = "";
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
			name = argv[++i];
		else if (strcmp(argv[i], "--output") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--pfc") == 0 && i + 1 < argc)
			pfc = argv[++i];
		else if (argv[i][0] != '-' && !in)
			in = argv[i];
		else
			return policyc__usage();
	}
	if (!name || !out || !in || !policyc__valid_name(name))
		return policyc__usage();

	r = policyc_parse(in, &policy, err, sizeof(err));
	if (r < 0)
		goto fail;
	kctx = policyc__build(&policy, SCMP_ACT_KILL_PROCESS, err, sizeof(err));
	lctx = kctx ? policyc__build(&policy, SCMP_ACT_LOG, err, sizeof(err)) : NULL;
	if (!kctx || !lctx)
		goto fail;
	r = policyc__export(kctx, &kill, err, sizeof(err));
	if (r == 0)
		r = policyc__export(lctx, &log, err, sizeof(err));
	if (r < 0)
		goto fail;
	if (pfc && (r = policyc__pfc(kctx, pfc)) < 0) {
		snprintf(err, sizeof(err), "%s: %s", pfc, strerror(-r));
		goto fail;
	}
	r = policyc__emit(out, name, &policy, &kill, &log);
	if (r < 0) {
		snprintf(err, sizeof(err), "%s: %s", out, strerror(-r));
		goto fail;
	}
	seccomp_release(kctx);
	seccomp_release(lctx);
	return 0;
fail:
	fprintf(stderr, "%s\n", err[0] ? err : "policyc: failed");
	if (kctx)
		seccomp_release(kctx);
	if (lctx)
		seccomp_release(lctx);
	return 1;
}
