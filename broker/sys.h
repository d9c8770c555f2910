/*
 * sys: the kernel boundary of the broker's VFIO core, and the error record it fills.
 *
 * Every VFIO open() and ioctl() of vfio.c, dma.c and irq.c goes through a `struct brk_sys` so that
 * host tests can run the whole core against a fake kernel that records calls and injects errors;
 * `brk_sys_real` is the real one. Paths under /dev and /sys are prefixed with `root` so tests can
 * point them at a directory tree they built.
 */
#ifndef VB_BROKER_SYS_H
#define VB_BROKER_SYS_H

#include <stdarg.h>
#include <stddef.h>

struct brk_sys {
	/* Returns a new O_CLOEXEC fd or a negative errno. `path` already carries `root`. */
	int (*open)(void *ctx, const char *path, int flags);
	/* Returns the ioctl's non-negative result or a negative errno. */
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	void *ctx;
	/* Prepended to every /dev and /sys path; "" on a real system. Never NULL. */
	const char *root;
};

/* open(2) and ioctl(2) on the running kernel, root "". */
extern const struct brk_sys brk_sys_real;

/* Longest message a rejection carries, terminating NUL included. */
#define BRK_ERR_MAX 256

/* Why a call failed, for the operator or the peer: `code` is the negative errno the call
 * returned, `msg` a one-line human explanation (never parsed). Every function taking a
 * `struct brk_err *` accepts NULL there. */
struct brk_err {
	int code;
	char msg[BRK_ERR_MAX];
};

/* Fills `err` (when non-NULL) and returns `code`, so that `return brk_errf(err, -EINVAL, ...)`
 * reads naturally. `code` must be a negative errno. */
int brk_errf(struct brk_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Resets `err` to "no error" (code 0, empty message). NULL is allowed. */
void brk_err_clear(struct brk_err *err);

/* snprintf() of `root` + `fmt` into buf; -ENAMETOOLONG when it does not fit. */
int brk_sys_path(const struct brk_sys *sys, char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
