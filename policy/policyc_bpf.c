/*
 * policyc_bpf: turns a parsed policy into seccomp BPF with libseccomp (x86_64 only, binary-tree
 * optimized, every rule added exactly as written) and exports the program. Shared by the policyc
 * tool and the fuzz target of its input (tests/fuzz/fuzz_policy.c), so that what the fuzzer
 * proves about the compiler is about the compiler the build runs.
 *
 * Trusts: libseccomp to translate rules into BPF; the parser (policyc_parse.c) to have checked
 * the rules.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <seccomp.h>

#include "base.h"
#include "policyc.h"

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

scmp_filter_ctx policyc_build(const struct policyc_policy *p, uint32_t def, struct vb_err *err)
{
	scmp_filter_ctx ctx = seccomp_init(def);
	size_t i;
	int r;

	if (!ctx) {
		vb_errf(err, -ENOMEM, "%s: seccomp_init failed", p->path);
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
			vb_errf(err, r, "%s:%u: libseccomp rejected the rule: %s", p->path,
				p->rules[i].r.line, strerror(-r));
			seccomp_release(ctx);
			return NULL;
		}
	}
	return ctx;
fail_ctx:
	vb_errf(err, r, "%s: libseccomp set-up failed: %s", p->path, strerror(-r));
	seccomp_release(ctx);
	return NULL;
}

int policyc_export(scmp_filter_ctx ctx, struct policyc_prog *prog, struct vb_err *err)
{
	_cleanup_close_ int fd = memfd_create("policyc", MFD_CLOEXEC);
	ssize_t n;
	off_t size;
	int r;

	if (fd < 0)
		return vb_errf(err, -errno, "memfd_create: %s", strerror(errno));
	r = seccomp_export_bpf(ctx, fd);
	if (r < 0)
		return vb_errf(err, r, "seccomp_export_bpf: %s", strerror(-r));
	size = lseek(fd, 0, SEEK_END);
	if (size <= 0 || size % sizeof(struct sock_filter) || (size_t)size > sizeof(prog->insns))
		return vb_errf(err, -EFBIG, "exported program has a bad size (%lld bytes)",
			       (long long)size);
	n = pread(fd, prog->insns, (size_t)size, 0);
	if (n != size) {
		r = n < 0 ? -errno : -EIO;
		return vb_errf(err, r, "reading the exported program: %s", strerror(-r));
	}
	prog->len = (size_t)size / sizeof(struct sock_filter);
	return 0;
}

/* What the compiling child sends back: its verdict, then either both programs or a message. */
struct policyc__result {
	int r;
	struct vb_err err;
	struct policyc_prog kill, log;
};

static int policyc__compile_child(const struct policyc_policy *p, const char *pfc,
				  struct policyc__result *res)
{
	scmp_filter_ctx kctx = policyc_build(p, SCMP_ACT_KILL_PROCESS, &res->err);
	scmp_filter_ctx lctx = kctx ? policyc_build(p, SCMP_ACT_LOG, &res->err) : NULL;
	/* A build that failed said why, with its code. */
	int r = kctx && lctx ? 0 : res->err.code;

	if (r == 0)
		r = policyc_export(kctx, &res->kill, &res->err);
	if (r == 0)
		r = policyc_export(lctx, &res->log, &res->err);
	if (r == 0 && pfc) {
		FILE *f = fopen(pfc, "we");

		r = f ? seccomp_export_pfc(kctx, fileno(f)) : -errno;
		if (f)
			fclose(f);
		if (r < 0)
			vb_errf(&res->err, r, "%s: %s", pfc, strerror(-r));
	}
	if (kctx)
		seccomp_release(kctx);
	if (lctx)
		seccomp_release(lctx);
	return r;
}

static void policyc__result_unmap(struct policyc__result *res)
{
	if (res)
		munmap(res, sizeof(*res));
}
VB_DEFINE_CLEANUP(struct policyc__result, policyc__result_unmap);

int policyc_compile(const struct policyc_policy *p, const char *pfc, unsigned timeout_s,
		    struct policyc_prog *kill_prog, struct policyc_prog *log_prog,
		    struct vb_err *err)
{
	_cleanup_(policyc__result_unmapp) struct policyc__result *res = NULL;
	_cleanup_close_ int rfd = -1;
	int fds[2], status, n, r;
	struct pollfd pf;
	size_t got = 0;
	void *mem;
	pid_t pid;
	char c;

	mem = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return vb_errf(err, -errno, "%s: %s", p->path, strerror(errno));
	res = memset(mem, 0, sizeof(*res));
	if (pipe2(fds, O_CLOEXEC) < 0)
		return vb_errf(err, -errno, "%s: %s", p->path, strerror(errno));
	rfd = fds[0];
	pid = fork();
	if (pid < 0) {
		r = vb_errf(err, -errno, "%s: fork: %s", p->path, strerror(errno));
		close(fds[1]);
		return r;
	}
	if (pid == 0) {
		close(rfd);
		res->r = policyc__compile_child(p, pfc, res);
		/* One byte says "done"; EOF without it says the child died. */
		_exit(write(fds[1], "x", 1) == 1 ? 0 : 1);
	}
	close(fds[1]);
	pf = (struct pollfd){.fd = rfd, .events = POLLIN};
	n = poll(&pf, 1, timeout_s > 0 && timeout_s < 2000000 ? (int)(timeout_s * 1000) : -1);
	if (n > 0 && read(rfd, &c, 1) == 1)
		got = 1;
	if (!got)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (n == 0)
		return vb_errf(
		    err, -ETIMEDOUT,
		    "%s: libseccomp did not finish building the filter within %u s (it can loop "
		    "on rules for one syscall that compare different arguments after a shared "
		    "one); split or simplify those rules",
		    p->path, timeout_s);
	if (!got)
		return vb_errf(err, -EIO, "%s: the libseccomp build died (status %#x)", p->path,
			       status);
	if (res->r == 0) {
		*kill_prog = res->kill;
		*log_prog = res->log;
	} else if (err) {
		*err = res->err;
	}
	return res->r;
}
